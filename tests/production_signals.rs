//! Signals: SIGTERM drains (421 to idle sessions, running uploads finish within the grace
//! period, new connections refused, exit 0); SIGHUP reloads the users file.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

fn start(extra: &[&str]) -> Server {
    Server::start_with(ServerOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    })
}

/// Next reply within `timeout`; None on EOF/reset.
fn next_reply(c: &mut Ftp, timeout: Duration) -> Option<Reply> {
    c.set_timeout(timeout);
    match c.try_read_reply() {
        Ok(r) => Some(r),
        Err(ReadError::Eof) | Err(ReadError::Io(_)) => None,
        Err(e) => c.fail(&format!("waiting for a reply: {e}")),
    }
}

/// A new connection after SIGTERM must not be served: refused, or closed (421 allowed).
fn assert_new_connection_refused(addr: std::net::SocketAddr, what: &str) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Err(e) => eprintln!("{what}: new connection refused: {e}"),
        Ok(s) => {
            let mut c = Ftp::from_stream(s, addr);
            match next_reply(&mut c, Duration::from_secs(3)) {
                None => {}
                Some(r) => {
                    assert_eq!(
                        r.code, 421,
                        "{what}: a new connection after SIGTERM got {r} (expected refusal or 421)"
                    );
                    assert!(
                        c.wait_closed(Duration::from_secs(3)),
                        "{what}: not closed after 421"
                    );
                }
            }
        }
    }
}

#[test]
fn sigterm_with_idle_sessions_sends_421_and_exits_0() {
    let mut srv = start(&["--shutdown-grace", "10"]);
    let mut sessions: Vec<Ftp> = (0..3).map(|_| srv.login()).collect();
    sessions.push(Ftp::connect(srv.addr)); // not logged in
    let t0 = Instant::now();
    srv.signal(libc::SIGTERM);
    for (i, c) in sessions.iter_mut().enumerate() {
        let r = next_reply(c, Duration::from_secs(5));
        match r {
            Some(r) => assert_eq!(r.code, 421, "session {i}: expected 421 on SIGTERM, got {r}"),
            None => panic!(
                "session {i}: closed without 421 after SIGTERM ({:?})",
                t0.elapsed()
            ),
        }
        assert!(
            c.wait_closed(Duration::from_secs(3)),
            "session {i}: not closed after 421"
        );
    }
    let st = srv.wait_exit(Duration::from_secs(5));
    eprintln!("exit after {:?}: {st:?}", t0.elapsed());
    let st = st.unwrap_or_else(|| {
        panic!("server still running 5 s after SIGTERM with only idle sessions")
    });
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st:?}");
}

#[test]
fn sigterm_lets_a_running_upload_finish() {
    for_each_data_path(|dp| {
        let mut srv = Server::start_with(ServerOpts {
            extra_args: vec!["--shutdown-grace".into(), "10".into()],
            ..ServerOpts::default().data_path(dp)
        });
        let mut idle = srv.login();
        let data = test_bytes(1_000_000, 41);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let mut d = c.begin_transfer("STOR during-term.bin");
        let chunks: Vec<&[u8]> = data.chunks(data.len() / 20).collect();
        let t0 = Instant::now();
        for (i, ch) in chunks.iter().enumerate() {
            d.write_all(ch).unwrap_or_else(|e| {
                panic!("writing chunk {i} ({:?} after start): {e}", t0.elapsed())
            });
            if i == 4 {
                srv.signal(libc::SIGTERM);
                thread::sleep(Duration::from_millis(100));
                assert_new_connection_refused(srv.addr, "during the drain");
                // The idle session is told to go.
                let r = next_reply(&mut idle, Duration::from_secs(3));
                assert_eq!(
                    r.map(|r| r.code),
                    Some(421),
                    "idle session during the drain"
                );
            }
            thread::sleep(Duration::from_millis(120));
        }
        d.shutdown(Shutdown::Write).unwrap();
        drop(d);
        let r = next_reply(&mut c, Duration::from_secs(10));
        assert_eq!(
            r.as_ref().map(|r| r.code),
            Some(226),
            "upload running at SIGTERM: expected 226, got {r:?}\n{}",
            c.transcript()
        );
        assert_file_content(
            &srv.root().join("during-term.bin"),
            &data,
            "upload finished during the drain",
        );
        let r = next_reply(&mut c, Duration::from_secs(5));
        assert_eq!(
            r.as_ref().map(|r| r.code),
            Some(421),
            "after its upload the session gets 421: {r:?}"
        );
        let st = srv
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("server still running after the drain"));
        assert_eq!(st.code(), Some(0), "exit status: {st:?}");
        eprintln!("drained and exited after {:?}", t0.elapsed());
    });
}

#[test]
fn sighup_reloads_users_file() {
    let base = tempfile::Builder::new()
        .prefix("ringest-hup-")
        .tempdir()
        .unwrap();
    let (ra, rb) = (base.path().join("alice"), base.path().join("bob"));
    fs::create_dir(&ra).unwrap();
    fs::create_dir(&rb).unwrap();
    let (ha, hb) = (argon2_hash("alice-pw"), argon2_hash("bob-pw"));
    let users = base.path().join("users.toml");
    let alice = format!(
        "[[user]]\nname = \"alice\"\npassword = \"{ha}\"\nroot = \"{}\"\n",
        ra.display()
    );
    fs::write(&users, &alice).unwrap();
    let srv = users_file_server(
        base.path(),
        &users,
        &["--root", base.path().to_str().unwrap()],
    );
    let mut a = srv.login("alice", "alice-pw");
    a.cmd_expect("TYPE I", 200);
    // bob is not there yet.
    let mut b = Ftp::connect(srv.addr);
    b.cmd_expect("USER bob", 331);
    b.cmd_expect("PASS bob-pw", 530);
    drop(b);
    let mut with_bob = alice.clone();
    with_bob.push_str(&format!(
        "\n[[user]]\nname = \"bob\"\npassword = \"{hb}\"\nroot = \"{}\"\n",
        rb.display()
    ));
    let tmp = base.path().join("users.toml.new");
    fs::write(&tmp, &with_bob).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal(libc::SIGHUP);
    let t0 = Instant::now();
    let mut ok = false;
    while t0.elapsed() < Duration::from_secs(5) {
        let mut b = Ftp::connect(srv.addr);
        b.cmd_expect("USER bob", 331);
        let r = b.cmd("PASS bob-pw");
        if r.code == 230 {
            b.cmd_expect("TYPE I", 200);
            b.stor("bob.txt", b"bob was here", DataMode::Pasv);
            b.cmd_expect("QUIT", 221);
            ok = true;
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ok,
        "bob cannot log in 5 s after SIGHUP with bob added to the users file"
    );
    assert_file_content(
        &rb.join("bob.txt"),
        b"bob was here",
        "bob's upload in his root",
    );
    // alice's session survived the reload.
    a.cmd_expect("NOOP", 200);
    a.stor("alice.txt", b"still here", DataMode::Pasv);
    assert_file_content(
        &ra.join("alice.txt"),
        b"still here",
        "alice's upload after the reload",
    );
    a.cmd_expect("QUIT", 221);
    // A broken file on SIGHUP keeps the old users.
    fs::write(&tmp, "this is not toml [[[").unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(500));
    let mut a2 = srv.login("alice", "alice-pw");
    a2.cmd_expect("QUIT", 221);
    let mut b2 = srv.login("bob", "bob-pw");
    b2.cmd_expect("QUIT", 221);
}

/// A login remembered by the login cache must not outlive a password change: SIGHUP loads a new
/// users file with a fresh cache, so the old password fails and the new one works. A wrong password
/// never hits the cache.
#[test]
fn login_cache_forgets_a_changed_password_on_reload() {
    let base = tempfile::Builder::new()
        .prefix("ringest-cache-")
        .tempdir()
        .unwrap();
    let root = base.path().join("alice");
    fs::create_dir(&root).unwrap();
    let users = base.path().join("users.toml");
    let file_with = |h: &str| {
        format!(
            "[[user]]\nname = \"alice\"\npassword = \"{h}\"\nroot = \"{}\"\n",
            root.display()
        )
    };
    fs::write(&users, file_with(&argon2_hash("old-pw"))).unwrap();
    let srv = users_file_server(base.path(), &users, &["--login-cache-secs", "600"]);
    let pass = |pw: &str| {
        let mut c = Ftp::connect(srv.addr);
        c.cmd_expect("USER alice", 331);
        c.cmd(&format!("PASS {pw}")).code
    };
    // The first login verifies the hash and fills the cache; the next ones may use it.
    for _ in 0..3 {
        assert_eq!(pass("old-pw"), 230, "alice with her password");
        assert_eq!(
            pass("old-pw-"),
            530,
            "a wrong password after a cached login"
        );
        assert_eq!(pass("old-p"), 530, "a prefix of the cached password");
    }
    let tmp = base.path().join("users.toml.new");
    fs::write(&tmp, file_with(&argon2_hash("new-pw"))).unwrap();
    fs::rename(&tmp, &users).unwrap();
    srv.signal(libc::SIGHUP);
    let t0 = Instant::now();
    while pass("new-pw") != 230 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the new password does not work 5 s after SIGHUP"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pass("old-pw"),
        530,
        "the old password still logs in after the reload (stale login cache)"
    );
    assert_eq!(pass("new-pw"), 230, "the new password, cached");
}
