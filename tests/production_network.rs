//! Network safety: PORT/EPRT restrictions (foreign address, privileged port), passive
//! connections from a foreign address, passive port release after the data timeout, many
//! idle sessions, per-IP and global session limits, failed-login lockout, login and idle
//! timeouts (idle timer paused during transfers).

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn start(extra: &[&str]) -> Server {
    Server::start_with(ServerOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    })
}

/// Waits for the next reply (or EOF) within `timeout`; Ok(None) = EOF/reset.
fn reply_within(c: &mut Ftp, timeout: Duration) -> Result<Option<Reply>, String> {
    c.set_timeout(timeout);
    let r = match c.try_read_reply() {
        Ok(r) => Ok(Some(r)),
        Err(ReadError::Eof) | Err(ReadError::Io(_)) => Ok(None),
        Err(e) => Err(format!("{e}")),
    };
    c.set_timeout(CTRL_TIMEOUT);
    r
}

#[test]
fn port_and_eprt_refuse_foreign_address_and_low_ports() {
    let srv = Server::start();
    fs::write(srv.root().join("f.txt"), b"data").unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    // A listener on 127.0.0.2 that must never be contacted.
    let foreign = TcpListener::bind((OTHER_IP, 0)).unwrap();
    foreign.set_nonblocking(true).unwrap();
    let fp = foreign.local_addr().unwrap().port();
    for line in [
        format!("PORT 127,0,0,2,{},{}", fp >> 8, fp & 0xff),
        format!("EPRT |1|127.0.0.2|{fp}|"),
        "PORT 127,0,0,1,0,21".to_string(),
        "PORT 127,0,0,1,3,255".to_string(),
        "EPRT |1|127.0.0.1|80|".to_string(),
        "EPRT |1|127.0.0.1|1023|".to_string(),
        "PORT 10,1,2,3,200,1".to_string(),
    ] {
        let r = c.cmd(&line);
        if r.first_digit() != 5 {
            // If accepted, the transfer must at least not go there.
            let mut detail = String::new();
            if r.code == 200 {
                c.send("RETR f.txt");
                let r1 = c.read_reply();
                detail = format!(" (then RETR: {r1})");
                if r1.is_prelim() {
                    let r2 = c.read_reply();
                    detail.push_str(&format!(" / {r2}"));
                }
            }
            c.fail(&format!(
                "{line:?}: expected a 5xx refusal, got {r}{detail}"
            ));
        }
    }
    thread::sleep(Duration::from_millis(200));
    assert!(
        foreign.accept().is_err(),
        "the server connected to the foreign PORT address 127.0.0.2"
    );
    // The session still works with a proper PORT.
    let got = c.retr("f.txt", DataMode::Port);
    assert_eq!(got, b"data");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn passive_connection_from_foreign_address_is_refused() {
    for (what, upload) in [("RETR", false), ("STOR", true)] {
        let srv = Server::start();
        let content = test_bytes(300_000, 31);
        fs::write(srv.root().join("f.bin"), &content).unwrap();
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let pasv = c.pasv();
        // The thief connects first, from 127.0.0.2.
        let mut thief = match connect_from(OTHER_IP, pasv) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("{what}: connect from 127.0.0.2 refused outright: {e}");
                None
            }
        };
        if let Some(t) = thief.as_mut() {
            t.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            if upload {
                let _ = t.write_all(b"EVIL DATA FROM 127.0.0.2");
            }
        }
        thread::sleep(Duration::from_millis(300));
        let mut real = TcpStream::connect(pasv).unwrap();
        real.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let name = if upload { "up.bin" } else { "f.bin" };
        c.send(&format!("{what} {name}"));
        let r = c.read_reply();
        assert!(
            r.is_prelim(),
            "{what} after a foreign connect: expected 150, got {r}\n{}",
            c.transcript()
        );
        if upload {
            real.write_all(&content).unwrap();
            real.shutdown(Shutdown::Write).unwrap();
            drop(real);
        } else {
            let mut got = Vec::new();
            real.read_to_end(&mut got).unwrap();
            assert_bytes_eq(
                &content,
                &got,
                "RETR over the real client's data connection",
            );
        }
        let r = c.read_reply();
        assert_eq!(r.code, 226, "{what}: {r}\n{}", c.transcript());
        if upload {
            assert_file_content(
                &srv.root().join("up.bin"),
                &content,
                "upload with a foreign connect attempt",
            );
        }
        if let Some(mut t) = thief {
            let mut buf = [0u8; 4096];
            // A reset or a timeout means no data, as does a clean close.
            let got = t.read(&mut buf).unwrap_or_default();
            assert_eq!(
                got, 0,
                "{what}: the foreign (127.0.0.2) data connection received data"
            );
        }
        c.cmd_expect("QUIT", 221);
    }
}

#[test]
fn pasv_port_closed_after_data_timeout() {
    // A private passive range so that no other server reuses the port meanwhile.
    let srv = start(&["--data-timeout", "2", "--passive-ports", "51310-51329"]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let pasv = c.pasv();
    let t0 = Instant::now();
    // The port must be closed within ~3 s (data timeout 2 s).
    let mut closed = false;
    thread::sleep(Duration::from_millis(2500));
    while t0.elapsed() < Duration::from_secs(5) {
        match TcpStream::connect_timeout(&pasv, Duration::from_secs(1)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                closed = true;
                break;
            }
            Ok(s) => drop(s),
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(250));
    }
    assert!(
        closed,
        "passive port {pasv} still accepts connections {:?} after PASV (data timeout 2 s)",
        t0.elapsed()
    );
    eprintln!("passive port closed after {:?}", t0.elapsed());
    // The session still works (possibly after an unsolicited 425).
    c.set_timeout(Duration::from_millis(300));
    let mut extra = Vec::new();
    while let Ok(r) = c.try_read_reply() {
        extra.push(r);
        if extra.len() > 3 {
            break;
        }
    }
    c.set_timeout(CTRL_TIMEOUT);
    eprintln!("unsolicited replies after the data timeout: {extra:?}");
    c.cmd_expect("NOOP", 200);
    c.stor("after.bin", b"after the data timeout", DataMode::Pasv);
    assert_file_content(
        &srv.root().join("after.bin"),
        b"after the data timeout",
        "upload",
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn thousand_idle_sessions_do_not_block_a_new_upload() {
    let lim = raise_nofile(8192);
    assert!(lim >= 2500, "cannot raise RLIMIT_NOFILE (got {lim})");
    let srv = Server::start();
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(1000);
    for i in 0..1000 {
        let s = TcpStream::connect(srv.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(format!("USER {}\r\nPASS {}\r\n", srv.user, srv.pass).as_bytes())
            .unwrap();
        conns.push(s);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "opening sessions is too slow: {i} after {:?}",
            t0.elapsed()
        );
    }
    // Every session is logged in: greeting, 331, 230.
    for (i, s) in conns.iter_mut().enumerate() {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("\r\n230") {
            let n = s.read(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "session {i}: reading login replies: {e} (so far {:?})",
                    String::from_utf8_lossy(&got)
                )
            });
            assert!(
                n > 0,
                "session {i} closed: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() < 4096);
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "logins too slow");
    }
    eprintln!("1000 sessions logged in after {:?}", t0.elapsed());
    let t1 = Instant::now();
    let data = test_bytes(2 * MIB as usize, 32);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.stor("new.bin", &data, DataMode::Pasv);
    let took = t1.elapsed();
    assert_file_content(
        &srv.root().join("new.bin"),
        &data,
        "upload beside 1000 idle sessions",
    );
    assert!(
        took < Duration::from_secs(10),
        "new session + 2 MiB upload took {took:?}"
    );
    c.cmd_expect("QUIT", 221);
    // The idle sessions are still alive.
    for (i, s) in conns.iter_mut().enumerate().step_by(100) {
        s.write_all(b"NOOP\r\n").unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("200"),
            "session {i} NOOP: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

/// Connects; returns Ok(greeting code) or Err if the connection was closed without a
/// reply. For 421 also checks the connection is closed afterwards.
fn try_session(from: Option<Ipv4Addr>, srv: &Server) -> (Option<u16>, Ftp) {
    let s = match from {
        Some(ip) => connect_from(ip, srv.addr).expect("connect"),
        None => TcpStream::connect(srv.addr).expect("connect"),
    };
    let mut c = Ftp::from_stream(s, srv.addr);
    let r =
        reply_within(&mut c, Duration::from_secs(5)).unwrap_or_else(|e| panic!("greeting: {e}"));
    (r.map(|r| r.code), c)
}

#[test]
fn per_ip_session_limit() {
    let srv = start(&["--max-sessions-per-ip", "3"]);
    let mut held = Vec::new();
    for i in 0..3 {
        let (code, c) = try_session(None, &srv);
        assert_eq!(code, Some(220), "session {i} of 3 from 127.0.0.1");
        held.push(c);
    }
    let (code, mut c4) = try_session(None, &srv);
    assert_eq!(
        code,
        Some(421),
        "4th concurrent session from 127.0.0.1 (limit 3)"
    );
    assert!(
        c4.wait_closed(Duration::from_secs(3)),
        "4th session not closed after 421"
    );
    // Another address is not affected.
    let (code, mut o) = try_session(Some(OTHER_IP), &srv);
    assert_eq!(
        code,
        Some(220),
        "session from 127.0.0.2 while 127.0.0.1 is at its limit"
    );
    o.login(&srv.user, &srv.pass);
    o.cmd_expect("TYPE I", 200);
    let pasv = o.pasv();
    // The data connection must come from the control connection's address too.
    let mut d = connect_from(OTHER_IP, pasv).unwrap();
    o.send("STOR other.bin");
    let r = o.read_reply();
    assert!(r.is_prelim(), "STOR from 127.0.0.2: {r}");
    d.write_all(b"from 127.0.0.2").unwrap();
    drop(d);
    let r = o.read_reply();
    assert_eq!(r.code, 226, "STOR from 127.0.0.2: {r}");
    assert_file_content(
        &srv.root().join("other.bin"),
        b"from 127.0.0.2",
        "upload from 127.0.0.2",
    );
    o.cmd_expect("QUIT", 221);
    // Logged-in sessions count too; after one leaves, a new one is admitted.
    held[0].login(&srv.user, &srv.pass);
    let mut first = held.remove(0);
    first.cmd_expect("QUIT", 221);
    drop(first);
    let ok = wait_until(
        || {
            let (code, _c) = try_session(None, &srv);
            code == Some(220)
        },
        Duration::from_secs(5),
    );
    assert!(ok, "no new session admitted after one of three left");
}

#[test]
fn global_session_limit() {
    let srv = start(&["--max-sessions", "5"]);
    let mut held = Vec::new();
    for i in 0..5 {
        let from = if i % 2 == 0 { None } else { Some(OTHER_IP) };
        let (code, c) = try_session(from, &srv);
        assert_eq!(code, Some(220), "session {i} of 5");
        held.push(c);
    }
    for from in [None, Some(OTHER_IP)] {
        let (code, mut c) = try_session(from, &srv);
        assert_eq!(
            code,
            Some(421),
            "6th session (from {from:?}) with --max-sessions 5"
        );
        assert!(
            c.wait_closed(Duration::from_secs(3)),
            "6th session not closed after 421"
        );
    }
    drop(held.pop());
    let ok = wait_until(
        || {
            let (code, _c) = try_session(None, &srv);
            code == Some(220)
        },
        Duration::from_secs(5),
    );
    assert!(ok, "no new session admitted after one of five left");
}

#[test]
fn failed_logins_lock_out_the_ip() {
    let srv = start(&[
        "--max-login-failures-per-ip",
        "3",
        "--login-fail-delay-ms",
        "10",
    ]);
    let mut c = Ftp::connect(srv.addr);
    for i in 0..3 {
        // The server may close after a failure; reconnect then.
        let r = {
            c.send(&format!("USER {}", srv.user));
            match c.try_read_reply() {
                Ok(r) if r.code == 331 => {
                    c.send("PASS wrong-password");
                    c.read_reply()
                }
                Ok(r) => r,
                Err(_) => {
                    c = Ftp::connect(srv.addr);
                    c.cmd_expect(&format!("USER {}", srv.user), 331);
                    c.cmd("PASS wrong-password")
                }
            }
        };
        assert_eq!(r.code, 530, "wrong password #{}: {r}", i + 1);
    }
    // 4th attempt, right password, same IP: refused.
    let mut c2 = Ftp::connect_raw(srv.addr);
    let g = reply_within(&mut c2, Duration::from_secs(5)).unwrap();
    let mut refused = match g {
        None => true,
        Some(r) if r.code != 220 => {
            eprintln!("greeting after lockout: {r}");
            r.first_digit() >= 4
        }
        Some(_) => false,
    };
    if !refused {
        c2.send(&format!("USER {}", srv.user));
        let r = c2.read_reply();
        if r.code == 331 {
            c2.send(&format!("PASS {}", srv.pass));
            let r = c2.read_reply();
            assert_eq!(
                r.code, 530,
                "right password after 3 failures from the same IP: expected 530, got {r}"
            );
            refused = true;
        } else {
            assert_eq!(r.code, 530, "USER after 3 failures: {r}");
            refused = true;
        }
    }
    assert!(refused);
    // Another IP is not locked out.
    let mut o = Ftp::connect_from(OTHER_IP, srv.addr);
    o.login(&srv.user, &srv.pass);
    o.cmd_expect("QUIT", 221);
}

#[test]
fn login_timeout_closes_with_421() {
    let srv = start(&["--login-timeout", "1"]);
    let mut silent = Ftp::connect(srv.addr);
    let mut half = Ftp::connect(srv.addr);
    half.cmd_expect(&format!("USER {}", srv.user), 331);
    let t0 = Instant::now();
    for (what, c) in [("silent", &mut silent), ("after USER", &mut half)] {
        let r = reply_within(
            c,
            Duration::from_secs(3).saturating_sub(t0.elapsed()) + Duration::from_millis(500),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        match r {
            Some(r) => assert_eq!(
                r.code, 421,
                "{what}: expected 421 at login timeout, got {r}"
            ),
            None => panic!("{what}: closed without 421 ({:?})", t0.elapsed()),
        }
        assert!(
            c.wait_closed(Duration::from_secs(2)),
            "{what}: not closed after 421"
        );
    }
    eprintln!("login timeouts after {:?}", t0.elapsed());
    // A session that logs in in time is fine.
    let mut c = srv.login();
    c.cmd_expect("NOOP", 200);
}

#[test]
fn idle_timeout_closes_with_421() {
    let srv = start(&["--idle-timeout", "1"]);
    let mut c = srv.login();
    let t0 = Instant::now();
    let r = reply_within(&mut c, Duration::from_secs(3)).unwrap();
    match r {
        Some(r) => assert_eq!(r.code, 421, "expected 421 at idle timeout, got {r}"),
        None => panic!("closed without 421 after {:?}", t0.elapsed()),
    }
    assert!(
        c.wait_closed(Duration::from_secs(2)),
        "not closed after the idle 421"
    );
    eprintln!("idle timeout after {:?}", t0.elapsed());
}

#[test]
fn idle_timer_paused_during_slow_transfers() {
    for_each_data_path(|dp| {
        let srv = Server::start_with(ServerOpts {
            extra_args: vec![
                "--idle-timeout".into(),
                "1".into(),
                "--data-timeout".into(),
                "5".into(),
            ],
            ..ServerOpts::default().data_path(dp)
        });
        let data = test_bytes(600_000, 33);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let mut d = c.begin_transfer("STOR slow.bin");
        let t0 = Instant::now();
        for chunk in data.chunks(data.len() / 20) {
            d.write_all(chunk).unwrap();
            thread::sleep(Duration::from_millis(150));
        }
        d.shutdown(Shutdown::Write).unwrap();
        drop(d);
        let r = c.read_reply();
        assert_eq!(
            r.code,
            226,
            "slow upload ({:?}) with --idle-timeout 1: {r}\n{}",
            t0.elapsed(),
            c.transcript()
        );
        assert!(t0.elapsed() > Duration::from_secs(2));
        assert_file_content(&srv.root().join("slow.bin"), &data, "slow upload");
        // Slow download too.
        let big = test_bytes(3 * MIB as usize, 34);
        fs::write(srv.root().join("dl.bin"), &big).unwrap();
        let mut d = c.begin_transfer("RETR dl.bin");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 128 * 1024];
        let t0 = Instant::now();
        loop {
            let n = d.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_millis(100));
            assert!(t0.elapsed() < Duration::from_secs(30));
        }
        let r = c.read_reply();
        assert_eq!(
            r.code,
            226,
            "slow download ({:?}) with --idle-timeout 1: {r}\n{}",
            t0.elapsed(),
            c.transcript()
        );
        assert_bytes_eq(&big, &got, "slow download");
        eprintln!("slow download took {:?}", t0.elapsed());
        // After the transfer the idle timer runs again.
        let r = reply_within(&mut c, Duration::from_secs(3)).unwrap();
        assert_eq!(
            r.map(|r| r.code),
            Some(421),
            "idle timeout after the transfers"
        );
    });
}
