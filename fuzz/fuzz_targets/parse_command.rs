//! Control-connection input: arbitrary bytes through the line framer and the parser. Checks the
//! framer's memory bound and line limit, and that every parse error maps to a 5xx reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::command::{parse, LineBuffer};

const MAX_LINE: usize = 64;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size, so reads split at varying points.
    let (step, rest) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 16) + 1, rest),
        None => return,
    };
    let mut lb = LineBuffer::new(MAX_LINE);
    for chunk in rest.chunks(step) {
        lb.push(chunk);
        while let Some(item) = lb.next_line() {
            if let Ok(line) = item {
                assert!(line.len() <= MAX_LINE);
                assert!(!line.contains(&b'\n'));
                if let Err(e) = parse(&line) {
                    assert!((500..=599).contains(&e.reply_code()));
                }
            }
        }
        assert!(lb.buffered() <= MAX_LINE + 1);
    }
    // The raw input as one line too, past the framer's length limit.
    let _ = parse(rest);
});
