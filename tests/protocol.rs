//! Protocol conformance with a minimal hand-written client (tests/common): reply codes,
//! reply framing (CRLF, 3-digit codes), all four data-connection modes, directory
//! commands, listings, passive port range.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[test]
fn startup_prints_listening_and_user_lines() {
    let srv = Server::start();
    let root = srv.root().to_path_buf();
    let canon = fs::canonicalize(&root).unwrap();
    let ok = wait_until(
        || {
            srv.stdout_lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("ringest: user "))
        },
        Duration::from_secs(5),
    );
    let lines = srv.stdout_lines.lock().unwrap().clone();
    assert!(
        ok,
        "server did not print a 'ringest: user ...' line on stdout; stdout: {lines:?}"
    );
    let want = |r: &std::path::Path| {
        format!(
            "ringest: user \"{}\" password \"{}\" root \"{}\"",
            srv.user,
            srv.pass,
            r.display()
        )
    };
    assert!(
        lines
            .iter()
            .any(|l| *l == want(&root) || *l == want(&canon)),
        "expected stdout line {:?}; stdout was {lines:?}",
        want(&canon)
    );
    let listen = format!("ringest: listening on {}", srv.addr);
    assert_eq!(
        lines.first(),
        Some(&listen),
        "first stdout line; stdout was {lines:?}"
    );
}

#[test]
fn login_and_basic_reply_codes() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr); // asserts 220
    c.cmd_expect("NOOP", 200);
    c.cmd_expect("SYST", 215);
    let feat = c.cmd_expect("FEAT", 211);
    assert!(!feat.lines.is_empty());
    c.cmd_expect(&format!("USER {}", srv.user), 331);
    c.cmd_expect(&format!("PASS {}", srv.pass), 230);
    c.cmd_expect("TYPE I", 200);
    c.cmd_expect("TYPE A", 200);
    c.cmd_expect("TYPE I", 200);
    c.cmd_expect("STRU F", 200);
    c.cmd_expect("MODE S", 200);
    c.cmd_expect_class("OPTS UTF8 ON", 2);
    let pwd = c.cmd_expect("PWD", 257);
    assert_eq!(
        parse_257(&pwd.lines[0]).as_deref(),
        Some("/"),
        "PWD after login: {pwd}"
    );
    c.cmd_expect("NOOP", 200);
    c.cmd_expect("QUIT", 221);
    assert!(
        c.wait_closed(Duration::from_secs(5)),
        "server did not close the connection after QUIT 221"
    );
}

#[test]
fn bad_password_is_530_and_session_stays_unauthenticated() {
    let srv = Server::start();
    let mut c = Ftp::connect(srv.addr);
    c.cmd_expect(&format!("USER {}", srv.user), 331);
    c.cmd_expect("PASS wrong-password", 530);
    c.cmd_expect("PWD", 530);
    c.cmd_expect("LIST", 530);
    drop(c);

    // Wrong user name: USER may answer 331 (not revealing) or 530; PASS must be 530.
    let mut c = Ftp::connect(srv.addr);
    let r = c.cmd("USER nobody-here");
    assert!(
        r.code == 331 || r.code == 530,
        "USER with unknown name: got {r}\n{}",
        c.transcript()
    );
    if r.code == 331 {
        c.cmd_expect(&format!("PASS {}", srv.pass), 530);
    }
    c.cmd_expect("PWD", 530);
    drop(c);

    // PASS without USER must not log in.
    let mut c = Ftp::connect(srv.addr);
    let r = c.cmd(&format!("PASS {}", srv.pass));
    assert!(
        r.code != 230,
        "PASS without USER logged in: {r}\n{}",
        c.transcript()
    );
    c.cmd_expect("PWD", 530);
    drop(c);

    // The real credentials still work.
    let mut c = srv.login();
    c.cmd_expect("PWD", 257);
    c.cmd_expect("QUIT", 221);
}

/// STOR + RETR through PASV, EPSV, PORT and EPRT, with sizes 0, 1, 1 MiB + 1; checks the
/// file on disk and the downloaded bytes; 150/125 then 226 for every transfer.
#[test]
fn transfers_in_all_data_modes() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        for (mi, mode) in DataMode::ALL.into_iter().enumerate() {
            for (si, size) in [0usize, 1, (MIB + 1) as usize].into_iter().enumerate() {
                let name = format!("{mode:?}-{size}.bin").to_lowercase();
                let data = test_bytes(size, (mi * 10 + si) as u64 + 1);
                c.stor(&name, &data, mode);
                assert_file_content(
                    &srv.root().join(&name),
                    &data,
                    &format!("on disk after STOR {name} via {mode:?}"),
                );
                let back = c.retr(&name, mode);
                assert_bytes_eq(&data, &back, &format!("RETR {name} via {mode:?}"));
                let sz = c.cmd_expect(&format!("SIZE {name}"), 213);
                assert_eq!(
                    sz.lines[0].trim_end(),
                    format!("213 {size}"),
                    "SIZE {name}\n{}",
                    c.transcript()
                );
            }
        }
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn stor_overwrites_and_truncates_existing_file() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let big = test_bytes(300_000, 7);
        let small = test_bytes(1000, 8);
        c.stor("over.bin", &big, DataMode::Pasv);
        assert_file_content(&srv.root().join("over.bin"), &big, "first upload");
        c.stor("over.bin", &small, DataMode::Epsv);
        assert_file_content(
            &srv.root().join("over.bin"),
            &small,
            "second (shorter) upload must replace the file",
        );
        c.stor("over.bin", b"", DataMode::Pasv);
        assert_file_content(
            &srv.root().join("over.bin"),
            b"",
            "third (empty) upload must replace the file",
        );
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn missing_files_are_550() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let a = c.try_download("RETR no-such-file.bin", DataMode::Pasv);
    assert_eq!(
        a.final_code(),
        550,
        "RETR of a missing file: replies {:?}\n{}",
        a.replies,
        c.transcript()
    );
    assert!(
        a.data.is_empty(),
        "RETR of a missing file sent {} data bytes",
        a.data.len()
    );
    c.cmd_expect("SIZE no-such-file.bin", 550);
    c.cmd_expect("DELE no-such-file.bin", 550);
    c.cmd_expect("CWD no-such-dir", 550);
    let pwd = c.cmd_expect("PWD", 257);
    assert_eq!(parse_257(&pwd.lines[0]).as_deref(), Some("/"));
    // STOR into a directory that does not exist fails cleanly.
    let a = c.try_stor("no-such-dir/file.bin", b"abc", DataMode::Pasv);
    assert_eq!(
        a.final_code() / 100,
        5,
        "STOR into a missing directory: replies {:?}\n{}",
        a.replies,
        c.transcript()
    );
    assert!(
        !srv.root().join("no-such-dir").exists(),
        "STOR created a missing parent directory"
    );
    // The session is still usable.
    c.stor("after-errors.bin", b"fine", DataMode::Pasv);
    c.cmd_expect("QUIT", 221);
}

#[test]
fn directory_commands() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let root = srv.root().to_path_buf();
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);

        let r = c.cmd_expect("MKD d1", 257);
        assert!(
            root.join("d1").is_dir(),
            "MKD d1 did not create a directory on disk ({r})"
        );
        let r = c.cmd_expect("MKD /d1/d2", 257);
        assert!(
            root.join("d1/d2").is_dir(),
            "MKD /d1/d2 did not create a directory on disk ({r})"
        );
        let r = c.cmd("MKD d1");
        assert_eq!(
            r.first_digit(),
            5,
            "MKD of an existing directory must fail: {r}\n{}",
            c.transcript()
        );

        c.cmd_expect("CWD d1", 250);
        let pwd = c.cmd_expect("PWD", 257);
        assert_eq!(
            parse_257(&pwd.lines[0]).as_deref(),
            Some("/d1"),
            "PWD after CWD d1: {pwd}"
        );
        let data = test_bytes(4097, 3);
        c.stor("inner.bin", &data, DataMode::Pasv);
        assert_file_content(
            &root.join("d1/inner.bin"),
            &data,
            "STOR relative to cwd /d1",
        );
        c.cmd_expect("CWD d2", 250);
        let pwd = c.cmd_expect("PWD", 257);
        assert_eq!(
            parse_257(&pwd.lines[0]).as_deref(),
            Some("/d1/d2"),
            "PWD: {pwd}"
        );
        c.cmd_expect_class("CDUP", 2);
        let pwd = c.cmd_expect("PWD", 257);
        assert_eq!(
            parse_257(&pwd.lines[0]).as_deref(),
            Some("/d1"),
            "PWD after CDUP: {pwd}"
        );
        let sz = c.cmd_expect("SIZE /d1/inner.bin", 213);
        assert_eq!(sz.lines[0].trim_end(), "213 4097");
        let back = c.retr("/d1/inner.bin", DataMode::Epsv);
        assert_bytes_eq(&data, &back, "RETR by absolute path");
        c.cmd_expect("CWD /", 250);
        let pwd = c.cmd_expect("PWD", 257);
        assert_eq!(parse_257(&pwd.lines[0]).as_deref(), Some("/"));

        // Name with a space.
        c.stor("with space.txt", b"spaced", DataMode::Pasv);
        assert_file_content(
            &root.join("with space.txt"),
            b"spaced",
            "STOR 'with space.txt'",
        );

        c.cmd_expect("DELE d1/inner.bin", 250);
        assert!(
            !root.join("d1/inner.bin").exists(),
            "DELE did not remove the file"
        );
        c.cmd_expect("QUIT", 221);
    });
}

fn listing_lines(text: &str, what: &str) -> Vec<String> {
    if !text.is_empty() {
        assert!(
            text.ends_with("\r\n"),
            "{what}: listing does not end with CRLF: {:?}",
            truncate_middle(text, 2000)
        );
    }
    let lines: Vec<String> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for l in &lines {
        assert!(
            !l.contains('\n'),
            "{what}: listing line with bare LF: {l:?}"
        );
    }
    lines
}

#[test]
fn list_and_nlst() {
    let srv = Server::start();
    let root = srv.root();
    fs::write(root.join("alpha.txt"), b"hello").unwrap();
    fs::write(root.join("beta.bin"), vec![0u8; 12345]).unwrap();
    fs::create_dir(root.join("gamma")).unwrap();
    fs::write(root.join("gamma/inside.txt"), b"x").unwrap();
    let mut c = srv.login();
    for mode in [DataMode::Pasv, DataMode::Epsv, DataMode::Port] {
        let nlst = c.listing("NLST", mode);
        let mut names = listing_lines(&nlst, "NLST");
        names.sort();
        assert_eq!(
            names,
            vec!["alpha.txt", "beta.bin", "gamma"],
            "NLST output ({mode:?}): {nlst:?}"
        );

        let list = c.listing("LIST", mode);
        let lines = listing_lines(&list, "LIST");
        for name in ["alpha.txt", "beta.bin", "gamma"] {
            assert!(
                lines.iter().any(|l| l.ends_with(&format!(" {name}"))),
                "LIST ({mode:?}) has no line ending in {name:?}: {list:?}"
            );
        }
        let beta = lines.iter().find(|l| l.ends_with(" beta.bin")).unwrap();
        assert!(
            beta.contains(" 12345 "),
            "LIST line for beta.bin does not show its size 12345: {beta:?}"
        );
        let gamma = lines.iter().find(|l| l.ends_with(" gamma")).unwrap();
        assert!(
            gamma.starts_with('d'),
            "LIST line for directory gamma should start with 'd': {gamma:?}"
        );
    }
    let sub = c.listing("NLST gamma", DataMode::Pasv);
    let names = listing_lines(&sub, "NLST gamma");
    assert!(
        names
            .iter()
            .any(|n| n == "inside.txt" || n == "gamma/inside.txt"),
        "NLST gamma does not list inside.txt: {sub:?}"
    );
    c.cmd_expect("CWD gamma", 250);
    let sub = c.listing("LIST", DataMode::Pasv);
    assert!(
        sub.contains("inside.txt"),
        "LIST in /gamma does not show inside.txt: {sub:?}"
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn repeated_pasv_without_transfer_then_transfer() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    for _ in 0..5 {
        c.pasv();
    }
    c.epsv();
    c.pasv();
    let data = test_bytes(5000, 99);
    c.stor("after-many-pasv.bin", &data, DataMode::Pasv);
    assert_file_content(
        &srv.root().join("after-many-pasv.bin"),
        &data,
        "upload after repeated PASV",
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn passive_port_range_is_respected() {
    // A fixed range; only this test uses it.
    let (lo, hi) = (47_310u16, 47_329u16);
    for_each_data_path(|dp| {
        let srv = Server::start_with(ServerOpts {
            passive_ports: Some((lo, hi)),
            ..ServerOpts::default().data_path(dp)
        });
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        for i in 0..30 {
            let a = c.pasv();
            assert!(
                (lo..=hi).contains(&a.port()),
                "PASV port {} outside --passive-ports {lo}-{hi}",
                a.port()
            );
            let a = c.epsv();
            assert!(
                (lo..=hi).contains(&a.port()),
                "EPSV port {} outside --passive-ports {lo}-{hi}",
                a.port()
            );
            let mode = if i % 2 == 0 {
                DataMode::Pasv
            } else {
                DataMode::Epsv
            };
            let data = test_bytes(1000 + i, i as u64);
            let name = format!("range-{i}.bin");
            c.stor(&name, &data, mode);
            assert_file_content(
                &srv.root().join(&name),
                &data,
                &format!("upload #{i} with a port range"),
            );
        }
        c.cmd_expect("QUIT", 221);
    });
}

/// A session offers the port of its last completed passive transfer again; a connection that
/// reached that port between two transfers (silent, or already closed, which would otherwise read as
/// an empty file) must never be taken for the next transfer's data connection.
#[test]
fn reused_passive_port_ignores_connections_made_between_transfers() {
    use std::io::Write;
    use std::net::TcpStream;
    fn last_227(c: &Ftp) -> std::net::SocketAddr {
        c.log_lines()
            .iter()
            .rev()
            .find_map(|l| {
                l.strip_prefix("< ")
                    .filter(|r| r.starts_with("227"))
                    .and_then(parse_227)
            })
            .expect("a 227 reply in the transcript")
    }
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        c.stor("first.bin", b"first", DataMode::Pasv);
        for (i, close_stale) in [(0usize, false), (1, true)] {
            // Someone (here: the same address, which passes the peer check) connects to the port
            // the session used last, before the client asks for a new one.
            let last = last_227(&c);
            let stale = TcpStream::connect_timeout(&last, Duration::from_secs(5))
                .expect("the session keeps its last passive port listening");
            let name = format!("next{i}.bin");
            let body = test_bytes(70_000 + i, 90 + i as u64);
            if close_stale {
                drop(stale);
                std::thread::sleep(Duration::from_millis(100));
                c.stor(&name, &body, DataMode::Pasv);
            } else {
                let mut d = c.begin_transfer(&format!("STOR {name}"));
                d.write_all(&body).unwrap();
                drop(d);
                let r = c.read_reply();
                assert_eq!(r.code, 226, "STOR after a silent stale connection: {r}");
                drop(stale);
            }
            assert_eq!(last_227(&c), last, "the next PASV offers the same port");
            assert_file_content(
                &srv.root.path().join(&name),
                &body,
                "the upload after a stale connection",
            );
        }
        c.cmd_expect("QUIT", 221);
    });
}
