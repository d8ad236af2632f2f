//! MODE B (block mode) against the real server: a kept data connection across files (150 then 125,
//! 250 each), split headers, 65535-byte blocks, empty files, EOR bits, restart markers with 110 MARK
//! and REST resume, drops without EOF (426, nothing lands), RETR in block mode, and the commands that
//! end a kept connection. The protocol work is in tests/py/modeb_edge.py (raw sockets).

mod common;

use common::*;

#[test]
fn block_mode_edge_cases() {
    run_modeb_edge(&Server::start());
}
