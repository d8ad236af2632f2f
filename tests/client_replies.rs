//! Replies clients trip over (issue 10, item 4), checked with ftplib (tests/py/client_habits.py):
//! `MODE E` accepted (GridFTP extended block mode), `MODE Z`/`MODE C` answered 504 naming the
//! available modes (globus-url-copy shows a 501 as a syntax error), `HOST` after login 503 (RFC 7151), EPRT answered as EPRT, a NUL byte named, and
//! control characters in file names escaped in replies.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn ftplib_replies() {
    let srv = Server::start();
    let r = client_habits(&srv, "replies", Duration::from_secs(60));
    r.assert_success("ftplib client_habits.py replies");
    // The directory itself has the real name; only the replies escape it.
    assert!(
        srv.root().join("ctl\x1b[31mred\x07").is_dir(),
        "MKD with control characters: {:?}",
        dir_names(srv.root())
    );
}

#[test]
fn host_before_login_is_still_accepted() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    c.cmd_expect("HOST ftp.example.com", 220);
    c.cmd_expect(&format!("USER {}", srv.user), 331);
    c.cmd_expect("HOST ftp.example.com", 503);
    c.cmd_expect(&format!("PASS {}", srv.pass), 230);
    c.cmd_expect("QUIT", 221);
}
