//! MODE E decoder and transfer bookkeeping on arbitrary bytes. The first two bytes choose a split
//! point, the rest is fed as two buffers to one Decoder whose events go to a Transfer. Checks that
//! nothing panics, each buffer is consumed fully unless decoding fails, payload runs are non-empty
//! and lie inside the buffer, decoder errors are sticky, and the range set stays sorted, disjoint
//! and within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::modee::{Decoder, Event, Limits, Transfer};

const MAX_RANGES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let (split, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        _ => return,
    };
    let (first, second) = rest.split_at(split.min(rest.len()));
    let limits = Limits {
        max_file_size: 1 << 40,
        max_ranges: MAX_RANGES,
        max_connections: 8,
    };
    let mut dec = Decoder::new(limits);
    let mut tr = Transfer::new(limits);
    for chunk in [first, second] {
        let mut pos = 0;
        loop {
            match dec.next(chunk, &mut pos) {
                Ok(Some(ev)) => {
                    if let Event::Data { offset, bytes } = ev {
                        assert!(!bytes.is_empty() && pos <= chunk.len());
                        assert!(offset.checked_add(bytes.len() as u64).is_some());
                    }
                    let _ = tr.on_event(0, &ev);
                    let r = tr.ranges();
                    assert!(r.len() <= MAX_RANGES);
                    assert!(r.iter().all(|&(s, e)| s < e));
                    assert!(r.windows(2).all(|w| w[0].1 < w[1].0));
                }
                Ok(None) => {
                    assert_eq!(pos, chunk.len());
                    break;
                }
                Err(e) => {
                    assert_eq!(dec.next(chunk, &mut 0), Err(e));
                    return;
                }
            }
        }
    }
});
