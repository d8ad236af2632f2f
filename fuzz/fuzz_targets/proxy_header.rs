//! The first bytes of a connection behind a load balancer: arbitrary bytes through the PROXY header
//! parser, in pieces. Checks that it never holds more than the largest header, and that a header it
//! accepts lies within what it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::proto::proxy::{Parser, V2_MAX};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a piece size, so the header arrives split at varying points.
    let (step, rest) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 32) + 1, rest),
        None => return,
    };
    let mut p = Parser::new();
    let mut fed = 0usize;
    for chunk in rest.chunks(step) {
        fed += chunk.len();
        match p.push(chunk) {
            Ok(Some(h)) => {
                assert!(h.len <= fed.min(V2_MAX));
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
