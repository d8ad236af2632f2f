//! MODE B (block mode) against the real server: a kept data connection across files (150 then 125,
//! 250 each), split headers, 65535-byte blocks, empty files, EOR bits, restart markers with 110 MARK
//! and REST resume, drops without EOF (426, nothing lands), RETR in block mode, and the commands that
//! end a kept connection. The protocol work is in tests/py/modeb_edge.py (raw sockets).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn block_mode_edge_cases() {
    require_tool("python3");
    let srv = Server::start();
    let script = format!("{}/tests/py/modeb_edge.py", env!("CARGO_MANIFEST_DIR"));
    let r = run_cmd(
        Command::new("python3")
            .arg(script)
            .arg("127.0.0.1")
            .arg(srv.port.to_string())
            .arg(&srv.user)
            .arg(&srv.pass)
            .arg(srv.root.path())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    );
    assert!(r.success(), "modeb_edge.py failed:\n{}", r.describe());
    assert!(
        r.stdout_str().contains("modeb edge cases ok"),
        "{}",
        r.describe()
    );
}
