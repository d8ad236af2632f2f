//! MODE B decoder on arbitrary bytes, cut into chunks at positions derived from the input itself.
//! Checks that it never panics, always consumes each chunk fully unless it fails, and that errors
//! are sticky.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::modeb::{Decoder, Event, MAX_MARKER};

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        // Chunk lengths from the data: 1..=256 bytes, derived from a rolling byte.
        let seed = data.get(i % data.len().max(1)).copied().unwrap_or(0);
        let len = (usize::from(seed) + i) % 256 + 1;
        i = i.wrapping_add(1);
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let mut pos = 0;
        loop {
            match dec.next(chunk, &mut pos) {
                Ok(Some(Event::Data(d))) => assert!(!d.is_empty() && pos <= chunk.len()),
                Ok(Some(Event::Restart(m))) => assert!(m.len() <= MAX_MARKER),
                Ok(Some(_)) => {}
                Ok(None) => {
                    assert_eq!(pos, chunk.len());
                    break;
                }
                Err(e) => {
                    assert_eq!(dec.next(chunk, &mut 0), Err(e));
                    assert!(!dec.at_file_boundary());
                    return;
                }
            }
        }
    }
});
