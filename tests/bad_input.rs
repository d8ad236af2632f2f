//! Hostile and malformed input over raw TCP: long lines, binary garbage, unknown
//! commands, commands before login, pipelining, split commands, path traversal,
//! symlink escapes, abrupt disconnects. Every test ends by proving that a fresh
//! session still logs in and uploads.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Outcome of waiting for the server's reaction to bad input.
enum Reaction {
    Replies(Vec<Reply>),
    Closed(Vec<Reply>),
}

/// Collects replies until `want` returns true for one, or the connection closes;
/// panics on timeout (= server hangs) or malformed replies.
fn await_reaction(
    c: &mut Ftp,
    timeout: Duration,
    what: &str,
    want: impl Fn(&Reply) -> bool,
) -> Reaction {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        match c.try_read_reply() {
            Ok(r) => {
                let done = want(&r);
                got.push(r);
                if done {
                    return Reaction::Replies(got);
                }
            }
            Err(ReadError::Eof) | Err(ReadError::Io(_)) => return Reaction::Closed(got),
            Err(ReadError::Timeout) => {}
            Err(e @ ReadError::Malformed(_)) => c.fail(&format!("{what}: {e}")),
        }
        if Instant::now() >= deadline {
            c.fail(&format!(
                "{what}: the server neither replied as expected nor closed the connection within {timeout:?} \
                 (replies so far: {got:?})"
            ));
        }
    }
}

fn short_timeout(c: &mut Ftp) {
    c.set_timeout(Duration::from_millis(500));
}

#[test]
fn long_line_without_crlf() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    let line = vec![b'A'; 64 * 1024];
    // The server may stop reading and close; a write error is acceptable.
    let write_ok = c.send_raw(&line).is_ok();
    short_timeout(&mut c);
    match await_reaction(
        &mut c,
        Duration::from_secs(15),
        "64 KiB line without CRLF",
        |r| r.first_digit() >= 4,
    ) {
        Reaction::Replies(rs) => {
            let r = rs.last().unwrap();
            assert!(
                r.first_digit() == 5 || r.first_digit() == 4,
                "expected an error reply, got {r}"
            );
        }
        Reaction::Closed(rs) => {
            assert!(
                rs.iter().all(|r| r.first_digit() >= 4),
                "unexpected success reply to garbage: {rs:?}"
            );
        }
    }
    eprintln!(
        "write of the long line {}",
        if write_ok { "succeeded" } else { "failed" }
    );
    drop(c);
    srv.assert_serves_new_session("long-line");
}

#[test]
fn long_line_with_crlf_after_login() {
    let srv = Server::start();
    let mut c = srv.login();
    let mut line = vec![b'B'; 64 * 1024];
    line.extend_from_slice(b"\r\n");
    let _ = c.send_raw(&line);
    short_timeout(&mut c);
    match await_reaction(&mut c, Duration::from_secs(15), "64 KiB line + CRLF", |r| {
        r.first_digit() >= 4
    }) {
        Reaction::Replies(_) => {
            // Session survived: it must still work. Extra error replies (e.g. for the
            // remainder of the line) may precede the NOOP's 200.
            let _ = c.send_raw(b"NOOP\r\n");
            await_reaction(
                &mut c,
                Duration::from_secs(15),
                "NOOP after a 64 KiB line",
                |r| r.code == 200,
            );
        }
        Reaction::Closed(_) => {}
    }
    drop(c);
    srv.assert_serves_new_session("long-line-crlf");
}

#[test]
fn binary_garbage() {
    let srv = Server::start();
    for (i, logged_in) in [false, true].into_iter().enumerate() {
        let mut c = if logged_in {
            srv.login()
        } else {
            Ftp::connect(srv.addr)
        };
        let mut garbage = test_bytes(8192, 0xbad + i as u64);
        // Make sure the interesting bytes are present.
        garbage.extend_from_slice(
            b"\0\0\xff\xff\xfe\r\r\n\n\r\x00\xff\xf4\xff\xf2\r\nNOOP\0\r\n\xc3\x28\r\n\n\r",
        );
        garbage.extend_from_slice(&test_bytes(4096, 0xf00d + i as u64));
        let _ = c.send_raw(&garbage);
        // Terminate any partial line, then a NOOP to resynchronise.
        let _ = c.send_raw(b"\r\nNOOP\r\n");
        short_timeout(&mut c);
        match await_reaction(&mut c, Duration::from_secs(20), "binary garbage", |r| {
            r.code == 200
        }) {
            Reaction::Replies(rs) => {
                // Every reply before the NOOP's 200 must be an error (garbage is not a command).
                eprintln!(
                    "garbage (logged_in={logged_in}): {} replies, session survived",
                    rs.len()
                );
            }
            Reaction::Closed(rs) => eprintln!(
                "garbage (logged_in={logged_in}): closed after {} replies",
                rs.len()
            ),
        }
    }
    srv.assert_serves_new_session("garbage");
}

#[test]
fn unknown_command_is_500_or_502() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    let r = c.cmd("XYZZY frobnicate");
    assert!(
        matches!(r.code, 500 | 502 | 530),
        "unknown command before login: expected 500/502 (or 530), got {r}\n{}",
        c.transcript()
    );
    c.login(&srv.user, &srv.pass);
    for verb in ["XYZZY", "XYZZY with args", "FOOBARBAZ", "Q"] {
        let r = c.cmd(verb);
        assert!(
            matches!(r.code, 500 | 502),
            "unknown command {verb:?} after login: expected 500 or 502, got {r}\n{}",
            c.transcript()
        );
    }
    // Lower case commands are valid FTP (commands are case-insensitive).
    c.cmd_expect("noop", 200);
    c.cmd_expect("pwd", 257);
    c.cmd_expect("QUIT", 221);
    srv.assert_serves_new_session("unknown-cmd");
}

#[test]
fn commands_before_login_are_530() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    for line in [
        "PWD", "STOR x", "LIST", "CWD /", "RETR x", "NLST", "MKD d", "DELE x", "SIZE x", "CDUP",
        "TYPE I", "PASV", "EPSV",
    ] {
        let r = c.cmd(line);
        assert_eq!(
            r.code,
            530,
            "{line:?} before login: expected 530, got {r}\n{}",
            c.transcript()
        );
    }
    // Allowed before login.
    c.cmd_expect("NOOP", 200);
    c.cmd_expect("SYST", 215);
    c.cmd_expect("FEAT", 211);
    // After USER but before PASS still not logged in.
    c.cmd_expect(&format!("USER {}", srv.user), 331);
    c.cmd_expect("PWD", 530);
    c.cmd_expect("STOR y", 530);
    assert!(
        dir_names(srv.root()).is_empty(),
        "files created before login: {:?}",
        dir_names(srv.root())
    );
    c.cmd_expect("QUIT", 221);
    srv.assert_serves_new_session("before-login");
}

/// Thousands of commands in one burst: the server runs the ones already received before sending
/// the replies it holds (at most 4 KiB of them at a time), so every reply still comes, once, in
/// command order, and the session goes on.
#[test]
fn thousands_of_pipelined_commands_get_every_reply_in_order() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    c.login(&srv.user, &srv.pass);
    let mut batch = String::new();
    for i in 0..3000 {
        batch.push_str(if i % 2 == 0 { "NOOP\r\n" } else { "PWD\r\n" });
    }
    c.send_raw(batch.as_bytes()).unwrap();
    for i in 0..3000 {
        let want = if i % 2 == 0 { 200 } else { 257 };
        let r = c.read_reply();
        assert_eq!(r.code, want, "reply {i}\n{}", c.transcript());
    }
    c.cmd_expect("SYST", 215);
    c.cmd_expect("QUIT", 221);
    srv.assert_serves_new_session("thousands pipelined");
}

#[test]
fn pipelined_commands_in_one_write() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    let batch = format!(
        "USER {}\r\nPASS {}\r\nPWD\r\nTYPE I\r\nNOOP\r\n",
        srv.user, srv.pass
    );
    c.send_raw(batch.as_bytes()).unwrap();
    let codes: Vec<u16> = (0..5).map(|_| c.read_reply().code).collect();
    assert_eq!(
        codes,
        vec![331, 230, 257, 200, 200],
        "pipelined replies\n{}",
        c.transcript()
    );
    // Pipelined with QUIT at the end: all replies, then close.
    c.send_raw(b"NOOP\r\nSYST\r\nQUIT\r\n").unwrap();
    let codes: Vec<u16> = (0..3).map(|_| c.read_reply().code).collect();
    assert_eq!(
        codes,
        vec![200, 215, 221],
        "pipelined replies\n{}",
        c.transcript()
    );
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "connection not closed after QUIT"
    );
    srv.assert_serves_new_session("pipelined");
}

#[test]
fn command_split_across_many_writes() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    let text = format!("USER {}\r\nPASS {}\r\nPWD\r\n", srv.user, srv.pass);
    for chunk in text.as_bytes().chunks(3) {
        c.send_raw(chunk).unwrap();
        thread::sleep(Duration::from_millis(15));
    }
    // CR and LF in separate segments.
    c.send_raw(b"NOOP\r").unwrap();
    thread::sleep(Duration::from_millis(50));
    c.send_raw(b"\n").unwrap();
    let codes: Vec<u16> = (0..4).map(|_| c.read_reply().code).collect();
    assert_eq!(
        codes,
        vec![331, 230, 257, 200],
        "replies to byte-split commands\n{}",
        c.transcript()
    );
    c.cmd_expect("QUIT", 221);
}

fn pwd(c: &mut Ftp) -> String {
    let r = c.cmd_expect("PWD", 257);
    parse_257(&r.lines[0]).unwrap_or_else(|| c.fail(&format!("unparsable PWD reply {r}")))
}

/// Asserts that `dir` contains exactly `expected` (sorted names).
fn assert_dir_exactly(dir: &Path, expected: &[&str], what: &str) {
    let got = dir_names(dir);
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        got,
        want,
        "{what}: unexpected contents of {}",
        dir.display()
    );
}

fn assert_not_leaked(data: &[u8], secret: &[u8], what: &str) {
    if !secret.is_empty() && data.windows(secret.len()).any(|w| w == secret) {
        panic!("{what}: the server returned the content of a file outside the root");
    }
}

const SECRET: &[u8] = b"TOP-SECRET-CONTENT-outside-the-ftp-root\n";

/// The private base dir must contain only what the harness put there, and the self-signed
/// certificate and key the server itself creates beside its root (FTPS).
fn assert_base_untouched(srv: &Server) {
    let root_name = srv
        .root()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cert = format!("{root_name}.tls-cert.pem");
    let key = format!("{root_name}.tls-key.pem");
    assert_dir_exactly(
        &srv.root_parent(),
        &[&root_name, &cert, &key],
        "root's parent",
    );
    assert_dir_exactly(
        srv.base(),
        &["scratch", "server-stderr.log", "up"],
        "root's grandparent",
    );
    assert_dir_exactly(&srv.scratch(), &[], "scratch dir");
}

#[test]
fn path_traversal_stays_inside_root() {
    let srv = Server::start();
    let outside = tempfile::Builder::new()
        .prefix("ringest-outside-")
        .tempdir()
        .unwrap();
    fs::write(outside.path().join("secret"), SECRET).unwrap();
    let tag = srv
        .root()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let tmp = std::env::temp_dir();
    let deep = "../".repeat(12);
    let outside_rel = format!(
        "{deep}{}",
        outside.path().display().to_string().trim_start_matches('/')
    );

    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);

    let r = c.cmd("CWD ../../..");
    assert!(matches!(r.first_digit(), 2 | 5), "CWD ../../..: {r}");
    assert_eq!(
        pwd(&mut c),
        "/",
        "PWD after CWD ../../..\n{}",
        c.transcript()
    );
    c.cmd("CWD /../../..");
    assert_eq!(
        pwd(&mut c),
        "/",
        "PWD after CWD /../../..\n{}",
        c.transcript()
    );
    c.cmd("CDUP");
    assert_eq!(pwd(&mut c), "/", "PWD after CDUP at /\n{}", c.transcript());
    c.cmd_expect("MKD sub", 257);
    c.cmd_expect("CWD sub", 250);
    c.cmd(&format!("CWD {deep}"));
    assert_eq!(
        pwd(&mut c),
        "/",
        "PWD after CWD {deep} from /sub\n{}",
        c.transcript()
    );
    let r = c.cmd(&format!("CWD {}", outside.path().display()));
    assert_eq!(r.code, 550, "CWD to the absolute host path of a dir outside root must be 550 (it does not exist inside root): {r}");
    let r = c.cmd(&format!("CWD {outside_rel}"));
    if r.first_digit() == 2 {
        // Allowed only if it did not actually leave the root.
        let p = pwd(&mut c);
        let list = c.listing("NLST", DataMode::Pasv);
        assert!(
            !list.contains("secret"),
            "CWD {outside_rel} reached the outside dir (PWD {p:?}, NLST {list:?})"
        );
    }
    c.cmd_expect("CWD /", 250);

    // Writes through "..".
    for name in [
        format!("../../escape-{tag}.txt"),
        format!("../escape-{tag}.txt"),
        format!("/../../escape-{tag}.txt"),
        format!("sub/../../../escape-{tag}.txt"),
        format!("{deep}tmp/escape-{tag}.txt"),
        format!("{outside_rel}/escape.txt"),
    ] {
        let a = c.try_stor(&name, b"escaped!", DataMode::Pasv);
        eprintln!(
            "STOR {name}: {:?}",
            a.replies.iter().map(|r| r.code).collect::<Vec<_>>()
        );
    }
    for name in [
        format!("../../x-{tag}"),
        format!("{deep}tmp/x-{tag}"),
        format!("{outside_rel}/newdir"),
    ] {
        let r = c.cmd(&format!("MKD {name}"));
        eprintln!("MKD {name}: {r}");
    }
    // Reads through "..".
    let passwd = fs::read("/etc/passwd").unwrap_or_default();
    for name in [
        "../../../etc/passwd".to_string(),
        format!("{deep}etc/passwd"),
        "/../../../../etc/passwd".into(),
    ] {
        let a = c.try_download(&format!("RETR {name}"), DataMode::Pasv);
        if !passwd.is_empty() && a.data == passwd {
            c.fail(&format!("RETR {name} returned the host's /etc/passwd"));
        }
        assert!(
            a.final_code() / 100 != 2 || a.data.is_empty(),
            "RETR {name} succeeded with {} bytes",
            a.data.len()
        );
    }
    let a = c.try_download(&format!("RETR {outside_rel}/secret"), DataMode::Pasv);
    assert_not_leaked(&a.data, SECRET, &format!("RETR {outside_rel}/secret"));
    let r = c.cmd(&format!("SIZE {outside_rel}/secret"));
    assert_ne!(
        r.code, 213,
        "SIZE of a file outside the root answered 213: {r}"
    );
    let r = c.cmd(&format!("DELE {outside_rel}/secret"));
    eprintln!("DELE outside: {r}");
    let a = c.try_download(&format!("LIST {outside_rel}"), DataMode::Pasv);
    assert!(
        !String::from_utf8_lossy(&a.data).contains("secret"),
        "LIST {outside_rel} listed the outside dir"
    );
    c.cmd_expect("QUIT", 221);

    // Nothing may have appeared or disappeared outside the root.
    assert_dir_exactly(outside.path(), &["secret"], "outside dir");
    assert_eq!(
        fs::read(outside.path().join("secret")).unwrap(),
        SECRET,
        "outside secret file modified"
    );
    assert_base_untouched(&srv);
    for dir in [tmp.as_path(), Path::new("/")] {
        for n in [format!("escape-{tag}.txt"), format!("x-{tag}")] {
            assert!(
                !dir.join(&n).exists(),
                "{} was created outside the root",
                dir.join(&n).display()
            );
        }
    }
    srv.assert_serves_new_session("traversal");
}

#[test]
fn symlink_inside_root_does_not_escape() {
    let srv = Server::start();
    let outside = tempfile::Builder::new()
        .prefix("ringest-outside-")
        .tempdir()
        .unwrap();
    fs::write(outside.path().join("secret"), SECRET).unwrap();
    std::os::unix::fs::symlink(outside.path(), srv.root().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), srv.root().join("filelink")).unwrap();

    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);

    let a = c.try_stor("link/evil.txt", b"evil", DataMode::Pasv);
    eprintln!("STOR link/evil.txt: {:?}", a.replies);
    assert!(
        !outside.path().join("evil.txt").exists(),
        "STOR link/evil.txt wrote outside the root (replies {:?})",
        a.replies
    );

    let a = c.try_download("RETR link/secret", DataMode::Pasv);
    assert_not_leaked(&a.data, SECRET, "RETR link/secret");
    let a = c.try_download("RETR filelink", DataMode::Pasv);
    assert_not_leaked(
        &a.data,
        SECRET,
        "RETR filelink (symlink to a file outside root)",
    );
    let r = c.cmd("SIZE link/secret");
    assert_ne!(
        r.code, 213,
        "SIZE link/secret answered 213 (reads metadata outside the root): {r}"
    );

    let r = c.cmd("MKD link/newdir");
    eprintln!("MKD link/newdir: {r}");
    let r = c.cmd("DELE link/secret");
    eprintln!("DELE link/secret: {r}");

    // STOR onto the file symlink must not overwrite the target.
    let a = c.try_stor("filelink", b"overwritten", DataMode::Pasv);
    eprintln!("STOR filelink: {:?}", a.replies);

    // CWD into the symlink, then write relative to it.
    let r = c.cmd("CWD link");
    eprintln!("CWD link: {r}");
    if r.first_digit() == 2 {
        let a = c.try_stor("evil2.txt", b"evil2", DataMode::Pasv);
        eprintln!("STOR evil2.txt after CWD link: {:?}", a.replies);
        let a = c.try_download("RETR secret", DataMode::Pasv);
        assert_not_leaked(&a.data, SECRET, "RETR secret after CWD link");
    }
    c.cmd("CWD /");
    c.cmd_expect("QUIT", 221);

    assert_dir_exactly(outside.path(), &["secret"], "outside dir (symlink target)");
    assert_eq!(
        fs::read(outside.path().join("secret")).unwrap(),
        SECRET,
        "outside secret file modified through a symlink"
    );
    assert_base_untouched(&srv);
    srv.assert_serves_new_session("symlink");
}

#[test]
fn symlink_listing_does_not_show_outside_names() {
    let srv = Server::start();
    let outside = tempfile::Builder::new()
        .prefix("ringest-outside-")
        .tempdir()
        .unwrap();
    fs::write(outside.path().join("secret-name-xyz"), SECRET).unwrap();
    std::os::unix::fs::symlink(outside.path(), srv.root().join("link")).unwrap();
    let mut c = srv.login();
    for line in ["LIST link", "NLST link", "LIST link/", "NLST link/"] {
        let a = c.try_download(line, DataMode::Pasv);
        let text = String::from_utf8_lossy(&a.data);
        assert!(
            !text.contains("secret-name-xyz"),
            "{line} listed the directory outside the root: {text:?}"
        );
    }
    c.cmd_expect("QUIT", 221);
}

#[test]
fn abrupt_disconnects_mid_transfer() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        // 1. Control connection dropped in the middle of an upload.
        {
            let mut c = srv.login();
            c.cmd_expect("TYPE I", 200);
            let a = c.pasv();
            let mut d = TcpStream::connect(a).unwrap();
            c.send("STOR half.bin");
            let r = c.read_reply();
            assert!(r.is_prelim(), "STOR: expected 150/125, got {r}");
            d.write_all(&test_bytes(200_000, 1)).unwrap();
            let _ = c.stream().shutdown(Shutdown::Both);
            drop(c);
            let _ = d.write_all(&test_bytes(200_000, 2));
            drop(d);
        }
        // 2. Data connection reset (SO_LINGER 0 is not available in std; just drop both
        // before the server has read everything).
        {
            let mut c = srv.login();
            c.cmd_expect("TYPE I", 200);
            let a = c.pasv();
            let d = TcpStream::connect(a).unwrap();
            c.send("STOR dropped.bin");
            let _ = c.read_reply();
            drop(d);
            drop(c);
        }
        // 3. PASV opened, never connected, session closed.
        {
            let mut c = srv.login();
            c.pasv();
            drop(c);
        }
        // 4. RETR of a big file, reader disconnects after a few bytes.
        {
            write_test_file(&srv.root().join("big-read.bin"), 8 * MIB, 5);
            let mut c = srv.login();
            c.cmd_expect("TYPE I", 200);
            let a = c.pasv();
            let mut d = TcpStream::connect(a).unwrap();
            c.send("RETR big-read.bin");
            let _ = c.read_reply();
            let mut buf = [0u8; 1000];
            let _ = std::io::Read::read(&mut d, &mut buf);
            drop(d);
            drop(c);
        }
        thread::sleep(Duration::from_millis(200));
        srv.assert_serves_new_session("abrupt");
        // The server still lists the root (no stuck lock or descriptor).
        let mut c = srv.login();
        let list = c.listing("NLST", DataMode::Pasv);
        assert!(
            list.contains("big-read.bin"),
            "NLST after disconnects: {list:?}"
        );
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn port_to_closed_port_fails_cleanly() {
    let srv = Server::start();
    fs::write(srv.root().join("f.txt"), b"data").unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    // A port that is (almost certainly) closed: bind, note, close.
    let p = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The server may connect eagerly (PORT fails with 4xx/5xx) or lazily (PORT 200,
    // then RETR fails with 4xx/5xx, possibly after a 150).
    let r = c.cmd(&format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff));
    if r.code == 200 {
        c.send("RETR f.txt");
        let mut r = c.read_reply();
        if r.is_prelim() {
            r = c.read_reply();
        }
        assert!(
            matches!(r.first_digit(), 4 | 5),
            "RETR with an unreachable PORT address: expected 4xx/5xx, got {r}\n{}",
            c.transcript()
        );
    } else {
        assert!(
            matches!(r.first_digit(), 4 | 5),
            "PORT to a closed port: expected 200 or 4xx/5xx, got {r}\n{}",
            c.transcript()
        );
    }
    // Malformed PORT / EPRT arguments.
    for line in [
        "PORT 1,2,3",
        "PORT 999,0,0,1,1,1",
        "PORT a,b,c,d,e,f",
        "EPRT |9|127.0.0.1|1|",
        "EPRT garbage",
        "PORT",
    ] {
        let r = c.cmd(line);
        assert_eq!(
            r.first_digit(),
            5,
            "{line:?}: expected 5xx, got {r}\n{}",
            c.transcript()
        );
    }
    // The session recovers.
    let back = c.retr("f.txt", DataMode::Pasv);
    assert_eq!(back, b"data");
    c.cmd_expect("QUIT", 221);
    srv.assert_serves_new_session("port");
}
