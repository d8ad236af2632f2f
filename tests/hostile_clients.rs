//! Slow, hostile and unlucky clients: each test is one way a client could hurt other sessions or
//! get stuck (a client that stops reading, urgent-data ABOR, pipelined logins, simultaneous wrong
//! passwords, resource errors, a second server on the same port, passive port starvation, reserved
//! names, stall timing, shutdown), with a real socket and a real server.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

fn start(extra: &[&str]) -> Server {
    Server::start_with(ServerOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    })
}

/// A TCP connection whose receive buffer is tiny, so the peer's sends block soon when it does not
/// read (the kernel's autotuning would otherwise absorb megabytes).
fn connect_small_rcvbuf(addr: std::net::SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect_timeout(&addr.into(), Duration::from_secs(10))
        .unwrap();
    s.into()
}

/// Reads until EOF or reset; `true` if the peer closed within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn a_client_that_stops_reading_a_download_is_cut_at_the_data_timeout() {
    let srv = start(&["--data-timeout", "2"]);
    // 64 MiB is far more than the socket buffers hold.
    std::fs::write(srv.root().join("big.bin"), vec![7u8; 64 << 20]).unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let data_addr = c.pasv();
    c.send("RETR big.bin");
    let data = connect_small_rcvbuf(data_addr);
    let r = c.read_reply();
    assert_eq!(r.code, 150, "{}", c.transcript());
    // Never read the data connection.
    let started = Instant::now();
    c.set_timeout(Duration::from_secs(20));
    let r = c.read_reply();
    assert_eq!(
        r.code,
        426,
        "a stalled download must end with 426\n{}",
        c.transcript()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut after {:?}",
        started.elapsed()
    );
    drop(data);
    c.cmd_expect("NOOP", 200);
}

#[test]
fn a_client_that_never_reads_replies_is_disconnected() {
    let srv = start(&["--control-send-timeout", "2", "--login-timeout", "300"]);
    let mut s = connect_small_rcvbuf(srv.addr);
    // FEAT is allowed before login and answers ~300 bytes: 40,000 of them are ~12 MB of replies,
    // far beyond what the socket buffers absorb.
    let flood = "FEAT\r\n".repeat(40_000);
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server stops reading once its sends block, so our write may block too: bounded.
    let _ = s.write_all(flood.as_bytes());
    // Read nothing for longer than the control send timeout.
    thread::sleep(Duration::from_secs(5));
    assert!(
        closed_within(&mut s, Duration::from_secs(20)),
        "a session whose client reads no replies must be closed after control_send_timeout"
    );
    srv.assert_serves_new_session("after the non-reading client");
}

/// Python's ftplib.abort(): ABOR as urgent (MSG_OOB) data during a RETR and during a STOR.
#[test]
fn ftplib_abort_stops_a_download_and_an_upload_at_once() {
    require_tool("python3");
    let srv = start(&["--data-timeout", "300"]);
    std::fs::write(srv.root().join("big.bin"), vec![1u8; 64 << 20]).unwrap();
    let script = r#"
import ftplib, socket, sys, time
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=20)
ftp.login(user, pw)
ftp.voidcmd("TYPE I")
conn = ftp.transfercmd("RETR big.bin")
conn.recv(65536)  # then stop reading, as a user who pressed Ctrl-C

def abort(what):
    t = time.time()
    resp = ftp.abort()  # ABOR as urgent data; returns the first reply
    # RFC 959: 426 for the aborted transfer, then 226 for the ABOR itself.
    final = ftp.voidresp() if resp.startswith("426") else resp
    print(what, resp[:3], final[:3], round(time.time() - t, 2))

abort("retr abort")
conn.close()
conn = ftp.transfercmd("STOR up.bin")
conn.sendall(b"x" * 100000)
abort("stor abort")
conn.close()
print("noop", ftp.voidcmd("NOOP"))
ftp.quit()
"#;
    let r = run_cmd(
        Command::new("python3").arg("-c").arg(script).args([
            "127.0.0.1",
            &srv.port.to_string(),
            &srv.user,
            &srv.pass,
        ]),
        Duration::from_secs(60),
    );
    r.assert_success("ftplib abort() during RETR and STOR");
    let out = r.stdout_str();
    assert!(out.contains("retr abort 426 226"), "{out}");
    assert!(out.contains("stor abort 426 226"), "{out}");
    assert!(out.contains("noop 200"), "{out}");
    assert!(
        !srv.root().join("up.bin").exists(),
        "an aborted upload must land nothing"
    );
}

/// tnftp's interrupt (`abort_remote`): `IAC IP IAC` sent as urgent data (the urgent byte is the
/// second IAC), then `DM ABOR\r\n` as normal data.
#[test]
fn telnet_interrupt_and_synch_before_abor_abort_a_transfer() {
    let srv = start(&["--data-timeout", "300"]);
    std::fs::write(srv.root().join("big.bin"), vec![2u8; 64 << 20]).unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let data_addr = c.pasv();
    c.send("RETR big.bin");
    let data = connect_small_rcvbuf(data_addr);
    assert_eq!(c.read_reply().code, 150, "{}", c.transcript());
    let sock = socket2::SockRef::from(c.stream());
    sock.send_out_of_band(&[0xff, 0xf4, 0xff]).unwrap(); // IAC IP IAC, urgent
    c.set_timeout(Duration::from_secs(10));
    c.send_raw(b"\xf2ABOR\r\n").unwrap(); // DM ABOR
    let r = c.read_reply();
    assert_eq!(r.code, 426, "{}", c.transcript());
    let r = c.read_reply();
    assert_eq!(r.code, 226, "{}", c.transcript());
    drop(data);
    c.cmd_expect("NOOP", 200);
}

#[test]
fn pipelined_logins_do_not_outlast_the_login_timeout() {
    let srv = start(&[
        "--login-timeout",
        "2",
        "--login-fail-delay-ms",
        "500",
        "--max-login-failures-per-ip",
        "0",
    ]);
    let mut c = Ftp::connect(srv.addr);
    let mut burst = String::new();
    for i in 0..100 {
        burst.push_str(&format!("USER u{i}\r\nPASS wrong\r\n"));
    }
    let started = Instant::now();
    c.send_raw(burst.as_bytes()).unwrap();
    let mut s = c.stream().try_clone().unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(20)),
        "still connected 20 s into a 2 s login timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[test]
fn simultaneous_wrong_passwords_are_counted_before_they_are_hashed() {
    let srv = start(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-login-failures-per-ip",
        "10",
        "--max-login-checks-per-ip",
        "0",
        "--login-fail-delay-ms",
        "200",
    ]);
    let maddr = metrics_addr(&srv.stdout_lines);
    let n = 50;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (addr, user, b) = (srv.addr, srv.user.clone(), barrier.clone());
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.cmd_expect(&format!("USER {user}"), 331);
                b.wait();
                c.cmd("PASS wrong-password").code
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(codes.iter().all(|&c| c == 530), "{codes:?}");
    let (_, body) = http_get(&maddr, "/metrics");
    let checks = metric(&body, "ringest_password_checks_total").expect("password checks metric");
    assert!(
        checks <= 10.0,
        "{checks} passwords were hashed for 50 simultaneous attempts under a limit of 10"
    );
}

#[test]
fn simultaneous_logins_from_one_address_wait_for_a_check_slot() {
    let srv = start(&[
        "--max-login-failures-per-ip",
        "0",
        "--max-login-checks-per-ip",
        "2",
        "--login-fail-delay-ms",
        "1000",
    ]);
    let n = 8;
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (addr, user, pass, b) = (
                srv.addr,
                srv.user.clone(),
                srv.pass.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.set_timeout(Duration::from_secs(60));
                c.cmd_expect(&format!("USER {user}"), 331);
                b.wait();
                // Half of them right, half wrong: the right ones are only slowed down.
                let pw = if i % 2 == 0 {
                    pass
                } else {
                    "wrong".to_string()
                };
                c.cmd(&format!("PASS {pw}")).code
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let took = started.elapsed();
    assert_eq!(
        codes.iter().filter(|&&c| c == 230).count(),
        n / 2,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|&&c| c == 530).count(),
        n / 2,
        "{codes:?}"
    );
    // Each wrong password holds its slot through the 1 s failure delay: with 2 slots, the 4 wrong
    // ones take at least 2 s in all, where unlimited checks would all be done in about 1 s.
    assert!(
        took >= Duration::from_millis(1900),
        "8 logins with 2 check slots took only {took:?}"
    );
}

#[test]
fn a_missing_home_directory_is_421_and_never_locks_the_user_out() {
    let base = tempfile::Builder::new()
        .prefix("ringest-home-")
        .tempdir()
        .unwrap();
    let home = base.path().join("alice-home");
    let users = base.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\nroot = \"{}\"\n",
            argon2_hash("alice-pw"),
            home.display()
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--users-file",
        users.to_str().unwrap(),
        "--max-login-failures-per-ip",
        "3",
        "--login-fail-delay-ms",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let srv = ServerProc::start(&args, &[], &base.path().join("stderr.log"));
    for i in 0..6 {
        let mut c = Ftp::connect(srv.addr);
        c.cmd_expect("USER alice", 331);
        let r = c.cmd("PASS alice-pw");
        assert_eq!(r.code, 421, "attempt {i}: {}", c.transcript());
        assert!(
            r.text()
                .contains("Home directory not available (it does not exist)"),
            "{r}"
        );
        assert!(
            !r.text().contains(home.to_str().unwrap()),
            "the reply must not reveal server paths: {r}"
        );
    }
    assert!(
        srv.stderr_tail(65536)
            .contains("cannot open the user's root"),
        "the failure must be logged"
    );
    // Six server-side failures against a budget of three: the user is still not locked out.
    std::fs::create_dir(&home).unwrap();
    let mut c = Ftp::connect(srv.addr);
    c.login("alice", "alice-pw");
}

#[test]
fn running_out_of_descriptors_at_login_is_421_not_530() {
    let srv = Server::start_with(ServerOpts {
        nofile: Some(160),
        threads: 1,
        extra_args: [
            "--max-login-failures-per-ip",
            "2",
            "--passive-ports",
            "24000-24999",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..ServerOpts::default()
    });
    // This session is in before the descriptors run out, and logs in after.
    let mut late = Ftp::connect(srv.addr);
    late.cmd_expect(&format!("USER {}", srv.user), 331);
    // Use up the descriptors: sessions holding passive listeners, until a PASV fails (or the
    // server stops accepting).
    let mut holders = Vec::new();
    for _ in 0..200 {
        let Ok(stream) = TcpStream::connect(srv.addr) else {
            break;
        };
        let mut c = Ftp::from_stream(stream, srv.addr);
        c.set_timeout(Duration::from_secs(5));
        match c.try_read_reply() {
            Ok(r) if r.code == 220 => {}
            _ => break,
        }
        c.send(&format!("USER {}", srv.user));
        if c.try_read_reply().map(|r| r.code).ok() != Some(331) {
            break;
        }
        c.send(&format!("PASS {}", srv.pass));
        if c.try_read_reply().map(|r| r.code).ok() != Some(230) {
            break;
        }
        c.send("PASV");
        let code = c.try_read_reply().map(|r| r.code).ok();
        holders.push(c);
        if code != Some(227) {
            break;
        }
    }
    // The loop above can stop with one or two descriptors still free (a password check needs two
    // for a moment, a holder three): take the last ones with bare sessions until the server stops
    // accepting, so that the check below runs with none free whatever the process started with.
    for _ in 0..8 {
        let Ok(stream) = TcpStream::connect(srv.addr) else {
            break;
        };
        let mut c = Ftp::from_stream(stream, srv.addr);
        c.set_timeout(Duration::from_secs(1));
        match c.try_read_reply() {
            Ok(r) if r.code == 220 => holders.push(c),
            // Not accepted (left in the backlog) or refused: closed here, so it cannot take a
            // descriptor later that `late` needs to reconnect.
            _ => break,
        }
    }
    for _ in 0..3 {
        late.send(&format!("PASS {}", srv.pass));
        let r = late.read_reply();
        assert_eq!(
            r.code,
            421,
            "a correct password at the descriptor limit must get 421, not 530\n{}",
            late.transcript()
        );
        late = Ftp::connect_raw(srv.addr);
        match late.try_read_reply() {
            Ok(r) if r.code == 220 => {}
            _ => break, // not even accepted: the listener backs off; nothing to log in with
        }
        late.cmd_expect(&format!("USER {}", srv.user), 331);
    }
    drop(holders);
    // The 421s were not failed logins: with a budget of two, the user can still log in.
    thread::sleep(Duration::from_millis(300));
    let mut c = Ftp::connect(srv.addr);
    c.login(&srv.user, &srv.pass);
}

#[test]
fn a_second_server_on_the_same_port_fails_to_start() {
    let srv = start(&[]);
    let r = ringest_cmd(
        &[
            "serve",
            "--listen",
            &srv.addr.to_string(),
            "--root",
            srv.root().to_str().unwrap(),
            "--user",
            "x",
            "--password",
            "y",
        ],
        Duration::from_secs(20),
    );
    assert!(!r.success(), "second server started:\n{}", r.describe());
    assert!(
        r.stderr_str()
            .to_lowercase()
            .contains("address already in use"),
        "{}",
        r.describe()
    );
    srv.assert_serves_new_session("after the second server was refused");
}

/// Pins the calling thread to one CPU, so every connection it makes is steered (SO_INCOMING_CPU)
/// to the same core of the server.
fn pin_to_cpu0() {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn any_free_passive_port_serves_any_session() {
    let srv = Server::start_with(ServerOpts {
        threads: 2,
        // Below the ephemeral range and apart from every other test's ports, so only this
        // server can hold them.
        passive_ports: Some((23100, 23119)),
        ..ServerOpts::default()
    });
    let h = thread::spawn(move || {
        pin_to_cpu0();
        let mut sessions = Vec::new();
        let mut codes = Vec::new();
        for _ in 0..20 {
            let mut c = srv.login();
            codes.push(c.cmd("PASV").code);
            sessions.push(c);
        }
        codes
    });
    let codes = h.join().unwrap();
    let ok = codes.iter().filter(|&&c| c == 227).count();
    assert_eq!(ok, 20, "20 sessions, 20 ports: {codes:?}");
}

#[test]
fn names_reserved_by_the_server_are_refused() {
    let srv = start(&[]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    for name in [
        ".ringest-backup.part",
        ".ringest-partial-00000000000000aa.part",
    ] {
        let a = c.try_stor(name, b"planted", DataMode::Pasv);
        assert_eq!(a.final_code(), 553, "STOR {name}\n{}", c.transcript());
        assert!(!srv.root().join(name).exists());
    }
    c.cmd_expect("MKD .ringest-dir", 553);
    c.stor("ok.bin", b"fine", DataMode::Pasv);
    c.cmd_expect("RNFR ok.bin", 350);
    c.cmd_expect("RNTO .ringest-x.part", 553);
    assert!(srv.root().join("ok.bin").exists());
}

/// Sends bytes for ~2 s, then pauses: the 426 must come `data_timeout` after the last byte, not up
/// to twice that.
fn stalled_upload_is_cut_on_time(dp: DataPath, mode_b: bool) {
    let stall = 4;
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--data-timeout".into(), stall.to_string()],
        ..ServerOpts::default().data_path(dp)
    });
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    if mode_b {
        c.cmd_expect("MODE B", 200);
    }
    let data_addr = c.pasv();
    c.send("STOR stall.bin");
    let mut data = TcpStream::connect(data_addr).unwrap();
    assert_eq!(c.read_reply().code, 150, "{}", c.transcript());
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(2) {
        let chunk = if mode_b {
            let mut b = vec![0u8, 0x04, 0x00];
            b.extend_from_slice(&[9u8; 1024]);
            b
        } else {
            vec![9u8; 1024]
        };
        data.write_all(&chunk).unwrap();
        thread::sleep(Duration::from_millis(50));
    }
    let last = Instant::now();
    c.set_timeout(Duration::from_secs(30));
    let r = c.read_reply();
    let waited = last.elapsed();
    assert_eq!(r.code, 426, "{}", c.transcript());
    assert!(
        waited >= Duration::from_millis(stall * 1000 - 300),
        "{dp:?} mode_b={mode_b}: cut after {waited:?}, before the {stall} s timeout"
    );
    assert!(
        waited <= Duration::from_secs(stall + 1),
        "{dp:?} mode_b={mode_b}: cut {waited:?} after the last byte, timeout {stall} s"
    );
    assert!(!srv.root().join("stall.bin").exists());
    drop(data);
}

#[test]
fn stalled_uploads_are_cut_within_the_data_timeout_plus_a_second() {
    stalled_upload_is_cut_on_time(DataPath::Fixed, false);
    stalled_upload_is_cut_on_time(DataPath::Splice, false);
    stalled_upload_is_cut_on_time(DataPath::Fixed, true);
}

#[test]
fn after_the_grace_period_a_stalled_upload_hears_426_and_421() {
    let srv = start(&["--shutdown-grace", "1", "--data-timeout", "300"]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let data_addr = c.pasv();
    c.send("STOR slow.bin");
    let mut data = TcpStream::connect(data_addr).unwrap();
    assert_eq!(c.read_reply().code, 150, "{}", c.transcript());
    data.write_all(&[5u8; 1000]).unwrap();
    // SAFETY: kill(2) on the PID of the server this test started.
    unsafe { libc::kill(srv.pid() as i32, libc::SIGTERM) };
    c.set_timeout(Duration::from_secs(15));
    let r = c.read_reply();
    assert_eq!(r.code, 426, "{}", c.transcript());
    let r = c.read_reply();
    assert_eq!(r.code, 421, "{}", c.transcript());
    assert!(!srv.root().join("slow.bin").exists());
    drop(data);
}

/// One session keeps its MODE B data connection and floods it between transfers; the others on the
/// same core must still upload.
#[test]
fn flooding_a_kept_block_mode_connection_does_not_starve_other_uploads() {
    let srv = Server::start_with(ServerOpts {
        threads: 1,
        extra_args: vec![
            "--buffers".into(),
            "64".into(),
            "--data-timeout".into(),
            "10".into(),
        ],
        // The registered-buffer path, whose pool the flood would drain.
        ..ServerOpts::default().data_path(DataPath::Fixed)
    });
    let mut bad = srv.login();
    bad.cmd_expect("TYPE I", 200);
    bad.cmd_expect("MODE B", 200);
    let data_addr = bad.pasv();
    bad.send("STOR first.bin");
    let mut data = TcpStream::connect(data_addr).unwrap();
    assert_eq!(bad.read_reply().code, 150, "{}", bad.transcript());
    data.write_all(&[0x40, 0x00, 0x00]).unwrap(); // EOF block: an empty file
    let r = bad.read_reply();
    assert_eq!(r.code, 250, "kept open: {}", bad.transcript());
    // Flood the kept connection without another STOR, from a thread, bounded in time.
    let flood = thread::spawn(move || {
        data.set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let chunk = [0u8; 4096];
        let until = Instant::now() + Duration::from_secs(6);
        let mut sent = 0usize;
        while Instant::now() < until {
            match data.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
        (data, sent)
    });
    thread::sleep(Duration::from_millis(500));
    // 20 uploads of 256 KiB by another session on the same (only) core: 4 buffers each.
    let mut good = srv.login();
    good.cmd_expect("TYPE I", 200);
    let body = test_bytes(256 << 10, 77);
    for i in 0..20 {
        good.stor(&format!("g{i}.bin"), &body, DataMode::Pasv);
    }
    let (_data, _sent) = flood.join().unwrap();
    for i in 0..20 {
        assert_file_content(&srv.root().join(format!("g{i}.bin")), &body, "good upload");
    }
}

/// Debug logs of concurrent sessions: each line carries at most its own session's tag (a span
/// entered across `.await` used to nest other sessions' spans), and no colour codes go to a file.
#[test]
fn concurrent_sessions_log_only_their_own_tag_and_no_colour_codes() {
    let base = tempfile::Builder::new()
        .prefix("ringest-logs-")
        .tempdir()
        .unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let args = proc_args(&root, &["--threads", "1"]);
    let stderr = base.path().join("stderr.log");
    let srv = ServerProc::start(&args, &[("RINGEST_LOG", "debug")], &stderr);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let addr = srv.addr;
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.login("u", "p");
                c.cmd_expect("TYPE I", 200);
                for j in 0..5 {
                    c.stor(&format!("s{i}-{j}.bin"), &[i as u8; 5000], DataMode::Pasv);
                }
                c.cmd_expect("QUIT", 221);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        log.contains("session{"),
        "no session spans in the debug log:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
    let nested: Vec<&str> = log
        .lines()
        .filter(|l| l.matches("session{").count() > 1)
        .collect();
    assert!(
        nested.is_empty(),
        "{} lines carry more than one session's tag, e.g. {:?}",
        nested.len(),
        nested.first()
    );
}

/// The check that refuses a second server must not refuse a restart: the stopped server leaves
/// TIME_WAIT connections on its port, and a new one must bind it at once.
#[test]
fn a_server_restarts_on_its_port_at_once_after_a_stop() {
    let base = tempfile::Builder::new()
        .prefix("ringest-restart-")
        .tempdir()
        .unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let stderr = base.path().join("stderr.log");
    let mut first = ServerProc::start(&proc_args(&root, &[]), &[], &stderr);
    let addr = first.addr;
    // Some finished sessions and transfers: their connections sit in TIME_WAIT on the server side.
    for i in 0..5 {
        let mut c = first.login("u", "p");
        c.cmd_expect("TYPE I", 200);
        c.stor(&format!("r{i}.bin"), b"data", DataMode::Pasv);
        c.cmd_expect("QUIT", 221);
        // Let the server close first, so the TIME_WAIT is on its side of the port.
        thread::sleep(Duration::from_millis(100));
    }
    first.signal(libc::SIGTERM);
    assert!(
        first.wait_exit(Duration::from_secs(10)).is_some(),
        "first server did not stop"
    );
    let listen = addr.to_string();
    let args = proc_args(&root, &["--listen", &listen]);
    // proc_args starts with --listen 127.0.0.1:0; the second --listen would be refused by clap, so
    // drop the first pair.
    let args: Vec<String> = args[2..].to_vec();
    let second = ServerProc::start(&args, &[], &base.path().join("stderr2.log"));
    assert_eq!(second.addr, addr);
    let mut c = second.login("u", "p");
    c.cmd_expect("NOOP", 200);
}
