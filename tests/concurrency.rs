//! Many concurrent sessions with the hand-written client in tests/common.

mod common;

use common::*;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SESSIONS: usize = 200;
const FILES_PER_SESSION: usize = 20;
const MAX_SIZE: usize = 64 * 1024;

fn file_size(session: usize, file: usize) -> usize {
    // Varied 0..=64 KiB, including the edges.
    match (session * FILES_PER_SESSION + file) % 97 {
        0 => 0,
        1 => 1,
        2 => MAX_SIZE,
        _ => {
            let mut x = (session as u64) << 32 | file as u64;
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 29);
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (x >> 33) as usize % (MAX_SIZE + 1)
        }
    }
}

fn seed(session: usize, file: usize) -> u64 {
    (session as u64) * 1000 + file as u64 + 17
}

fn name(session: usize, file: usize) -> String {
    format!("s{session:03}-f{file:02}.bin")
}

/// Each of 200 sessions uploads 20 files (PASV/EPSV alternating) concurrently; every
/// file must land byte-exact. Bounded by a 5 minute deadline.
fn many_sessions(dp: DataPath) {
    let srv = Server::start_dp(dp);
    let addr = srv.addr;
    let (user, pass) = (srv.user.clone(), srv.pass.clone());
    let (tx, rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let start = Instant::now();
    for s in 0..SESSIONS {
        let tx = tx.clone();
        let (user, pass) = (user.clone(), pass.clone());
        thread::Builder::new()
            .name(format!("session-{s}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let r = std::panic::catch_unwind(move || {
                    let mut c = Ftp::connect(addr);
                    c.login(&user, &pass);
                    c.cmd_expect("TYPE I", 200);
                    for f in 0..FILES_PER_SESSION {
                        let data = test_bytes(file_size(s, f), seed(s, f));
                        let mode = if (s + f) % 2 == 0 {
                            DataMode::Pasv
                        } else {
                            DataMode::Epsv
                        };
                        c.stor(&name(s, f), &data, mode);
                    }
                    c.cmd_expect("QUIT", 221);
                });
                let _ = tx.send((s, r.map_err(|e| panic_message(&*e))));
            })
            .expect("spawn session thread");
    }
    drop(tx);

    let deadline = start + Duration::from_secs(300);
    let mut done = [false; SESSIONS];
    let mut errors = Vec::new();
    let mut finished = 0;
    while finished < SESSIONS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok((s, r)) => {
                finished += 1;
                done[s] = true;
                if let Err(e) = r {
                    errors.push(format!("session {s}: {e}"));
                }
            }
            Err(_) => {
                let pending: Vec<usize> = (0..SESSIONS).filter(|&s| !done[s]).collect();
                panic!(
                    "only {finished}/{SESSIONS} sessions finished within 300 s; pending sessions: {:?}{}",
                    &pending[..pending.len().min(20)],
                    if errors.is_empty() { String::new() } else { format!("\nerrors: {}", errors[..errors.len().min(5)].join("\n")) }
                );
            }
        }
    }
    eprintln!(
        "{SESSIONS} sessions x {FILES_PER_SESSION} files uploaded in {:.1?}",
        start.elapsed()
    );
    if !errors.is_empty() {
        panic!(
            "{} of {SESSIONS} sessions failed; first errors:\n{}",
            errors.len(),
            errors[..errors.len().min(5)].join("\n---\n")
        );
    }

    // Every file on disk, byte-exact, and nothing else.
    let mut expected: Vec<String> = (0..SESSIONS)
        .flat_map(|s| (0..FILES_PER_SESSION).map(move |f| name(s, f)))
        .collect();
    expected.sort();
    let got = dir_names(srv.root());
    if got != expected {
        let missing: Vec<&String> = expected
            .iter()
            .filter(|n| !got.contains(n))
            .take(10)
            .collect();
        let extra: Vec<&String> = got
            .iter()
            .filter(|n| !expected.contains(n))
            .take(10)
            .collect();
        panic!("root has {} entries, expected {}; missing (first 10): {missing:?}; unexpected: {extra:?}", got.len(), expected.len());
    }
    let mut bad = Vec::new();
    for s in 0..SESSIONS {
        for f in 0..FILES_PER_SESSION {
            let data = test_bytes(file_size(s, f), seed(s, f));
            let path = srv.root().join(name(s, f));
            let actual = std::fs::read(&path).unwrap();
            if let Some(d) = diff_bytes(&data, &actual) {
                bad.push(format!("{}: {d}", name(s, f)));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} files differ; first: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    srv.assert_serves_new_session("after-200-sessions");
}

#[test]
fn sessions_200_x_20_files_fixed() {
    many_sessions(DataPath::Fixed);
}

#[test]
fn sessions_200_x_20_files_splice() {
    many_sessions(DataPath::Splice);
}

/// 50 sessions download the same 1 MiB + 1 file at the same time.
#[test]
fn concurrent_downloads_of_one_file() {
    let srv = Server::start();
    let size = (MIB + 1) as usize;
    let data = test_bytes(size, 4242);
    std::fs::write(srv.root().join("shared.bin"), &data).unwrap();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let addr = srv.addr;
            let (user, pass) = (srv.user.clone(), srv.pass.clone());
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.login(&user, &pass);
                c.cmd_expect("TYPE I", 200);
                let mode = [
                    DataMode::Pasv,
                    DataMode::Epsv,
                    DataMode::Port,
                    DataMode::Eprt,
                ][i % 4];
                let back = c.retr("shared.bin", mode);
                c.cmd_expect("QUIT", 221);
                back
            })
        })
        .collect();
    let mut errors = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(back) => {
                if let Some(d) = diff_bytes(&data, &back) {
                    errors.push(format!("download {i}: {d}"));
                }
            }
            Err(e) => errors.push(format!("download {i}: {}", panic_message(&*e))),
        }
    }
    assert!(
        errors.is_empty(),
        "{} downloads failed:\n{}",
        errors.len(),
        errors[..errors.len().min(5)].join("\n---\n")
    );
}

/// Connections that are opened and dropped without (or half-way through) a login must
/// not disturb the server.
#[test]
fn connection_churn() {
    let srv = Server::start();
    for i in 0..300 {
        let s = TcpStream::connect(srv.addr).unwrap_or_else(|e| panic!("connect #{i}: {e}"));
        drop(s);
    }
    for _ in 0..100 {
        let mut c = Ftp::connect(srv.addr);
        c.send(&format!("USER {}", srv.user));
        drop(c);
    }
    // Many idle sessions open at once, then a working one.
    let idle: Vec<Ftp> = (0..100).map(|_| srv.login()).collect();
    srv.assert_serves_new_session("churn");
    drop(idle);
    srv.assert_serves_new_session("churn-2");
}

/// An upload whose client pauses mid-file must not hold the core: with one core thread, a second
/// session logs in, uploads and lists while the first upload waits for its next byte, and the first
/// upload then completes intact. (Found when a splice on a blocking data socket waited for a full
/// pipe's worth of data on the core thread.)
fn paused_upload_does_not_block_the_core(dp: DataPath) {
    let srv = Server::start_with(ServerOpts {
        threads: 1,
        ..ServerOpts::default().data_path(dp)
    });
    let body = test_bytes(400_000, 77);
    let mut a = srv.login();
    a.cmd_expect("TYPE I", 200);
    let mut d = a.begin_transfer("STOR paused.bin");
    use std::io::Write;
    d.write_all(&body[..150_000]).unwrap();
    d.flush().unwrap();
    thread::sleep(Duration::from_millis(300));

    let (tx, rx) = mpsc::channel();
    let (addr, user, pass) = (srv.addr, srv.user.clone(), srv.pass.clone());
    thread::spawn(move || {
        let mut b = Ftp::connect(addr);
        b.login(&user, &pass);
        b.cmd_expect("TYPE I", 200);
        b.stor("other.bin", b"meanwhile", DataMode::Pasv);
        b.cmd_expect("STAT", 211);
        b.cmd_expect("QUIT", 221);
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "[{}] a second session could not work while an upload on the same core was paused",
        dp.as_str()
    );
    d.write_all(&body[150_000..]).unwrap();
    drop(d);
    let r = a.read_reply();
    assert_eq!(r.code, 226, "the paused upload's reply: {r}");
    assert_file_content(
        &srv.root.path().join("paused.bin"),
        &body,
        "the paused upload",
    );
    assert_file_content(
        &srv.root.path().join("other.bin"),
        b"meanwhile",
        "the other upload",
    );
}

#[test]
fn paused_upload_does_not_block_the_core_fixed() {
    paused_upload_does_not_block_the_core(DataPath::Fixed);
}

#[test]
fn paused_upload_does_not_block_the_core_splice() {
    paused_upload_does_not_block_the_core(DataPath::Splice);
}
