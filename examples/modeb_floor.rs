//! The network floor of MODE B small-file ingest: what the socket calls alone cost per file, with no
//! file system, no event loop, no parsing and no FTP state, on each side of the connection.
//!
//! A pipelined MODE B upload (loadgen `--pipeline block`, lftp with `ftp:sync-mode off`) needs, per
//! file, at least three socket calls from the server (receive the STOR line, send the previous
//! file's 250 with this file's 125, receive the blocks) and three from the client (send the STOR
//! line, receive the replies, send the blocks). This program makes exactly those calls with plain
//! blocking sockets over loopback and times each side's calls, so that
//!
//! - `fs_ceiling`'s CPU per file plus the server side here is the least CPU per file any MODE B
//!   server can spend on this machine (the ratio target against `fs_ceiling` cannot be below it);
//! - `fs_ceiling`'s plus both sides here, over the cores, bounds the files per second any MODE B
//!   server can reach with its client on the same machine.
//!
//! ```text
//! cargo run --release --example modeb_floor -- [FILES] [SIZE] [SESSIONS]   (defaults 100000 4096 64)
//! ```
//!
//! Both sides run in one thread, in lock step over SESSIONS control/data connection pairs, so no
//! call ever waits: on loopback a send delivers into the peer's socket before it returns (the
//! receive processing runs in the sender's system call, as it does for ringest and loadgen). Each
//! call is timed with the monotonic clock; the sum is checked against the thread's CPU time. Being
//! cache-hot, unbatched by nothing and free of every cost but the calls, the figures are a floor:
//! a real server and client each pay more.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[path = "common/cpu.rs"]
mod cpu;

/// The replies ringest sends, so the byte counts match.
const OPENING: &[u8] = b"125 Data connection already open; transfer starting.\r\n";
const DONE: &[u8] = b"250 Transfer complete; data connection kept open.\r\n";

/// One session: the client's and the server's ends of its control and data connections.
struct Pair {
    client_ctl: TcpStream,
    client_data: TcpStream,
    server_ctl: TcpStream,
    server_data: TcpStream,
}

/// Time spent in each side's calls, and how many calls.
#[derive(Default)]
struct Side {
    time: Duration,
    calls: u64,
}

impl Side {
    fn time<T>(&mut self, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        let t0 = Instant::now();
        let r = f();
        self.time += t0.elapsed();
        self.calls += 1;
        r
    }
}

/// Reads until `want` bytes have come (the caller knows how many its peer sent).
fn recv_exact(
    side: &mut Side,
    s: &mut TcpStream,
    buf: &mut [u8],
    want: usize,
) -> std::io::Result<()> {
    let mut got = 0;
    while got < want {
        let n = side.time(|| s.read(&mut buf[got..]))?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(())
}

fn connect_pair(ctl: &TcpListener, data: &TcpListener) -> std::io::Result<Pair> {
    let client_ctl = TcpStream::connect(ctl.local_addr()?)?;
    let (server_ctl, _) = ctl.accept()?;
    let client_data = TcpStream::connect(data.local_addr()?)?;
    let (server_data, _) = data.accept()?;
    for s in [&client_ctl, &client_data, &server_ctl, &server_data] {
        s.set_nodelay(true)?;
    }
    Ok(Pair {
        client_ctl,
        client_data,
        server_ctl,
        server_data,
    })
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let files: u64 = args.next().map_or(100_000, |s| s.parse().expect("FILES"));
    let size: usize = args
        .next()
        .map_or(4096, |s| s.parse().expect("SIZE in bytes"));
    let sessions: u64 = args.next().map_or(64, |s| s.parse().expect("SESSIONS"));
    assert!(
        size > 0 && size <= 0xffff,
        "SIZE must fit one MODE B block (1..=65535)"
    );
    assert!(
        sessions > 0 && files >= sessions,
        "need at least one file per session"
    );

    let ctl_l = TcpListener::bind("127.0.0.1:0")?;
    let data_l = TcpListener::bind("127.0.0.1:0")?;
    let mut pairs = (0..sessions)
        .map(|_| connect_pair(&ctl_l, &data_l))
        .collect::<std::io::Result<Vec<_>>>()?;

    // One block of SIZE bytes, then the EOF block (descriptor 64, no bytes), in one send.
    let mut blocks = vec![0u8, (size >> 8) as u8, size as u8];
    blocks.extend(std::iter::repeat_n(0x5a_u8, size));
    blocks.extend([64, 0, 0]);
    let both = [DONE, OPENING].concat();
    let stor = |n: u64| format!("STOR f{n:09}\r\n").into_bytes();
    let stor_len = stor(0).len();
    let mut buf = vec![0u8; 1 << 16];
    let (mut server, mut client) = (Side::default(), Side::default());

    let cpu0 = cpu::cpu_seconds(libc::RUSAGE_THREAD);
    let wall0 = Instant::now();
    // Every session's first STOR and 125, then rounds over the sessions, a file each.
    for (i, p) in pairs.iter_mut().enumerate() {
        client.time(|| p.client_ctl.write_all(&stor(i as u64)))?;
        recv_exact(&mut server, &mut p.server_ctl, &mut buf, stor_len)?;
        server.time(|| p.server_ctl.write_all(OPENING))?;
    }
    let mut next = sessions;
    let mut done = 0u64;
    let mut replies_due = vec![OPENING.len(); pairs.len()];
    while done < files {
        for (i, p) in pairs.iter_mut().enumerate() {
            if done >= files || replies_due[i] == 0 {
                continue;
            }
            // Client: the replies up to this file's 125, its blocks, and (pipelined) the next STOR.
            recv_exact(&mut client, &mut p.client_ctl, &mut buf, replies_due[i])?;
            client.time(|| p.client_data.write_all(&blocks))?;
            let more = next < files;
            if more {
                client.time(|| p.client_ctl.write_all(&stor(next)))?;
                next += 1;
            }
            // Server: the blocks, the next STOR, then one send of this file's 250 and the next 125.
            recv_exact(&mut server, &mut p.server_data, &mut buf, blocks.len())?;
            done += 1;
            if more {
                recv_exact(&mut server, &mut p.server_ctl, &mut buf, stor_len)?;
                server.time(|| p.server_ctl.write_all(&both))?;
                replies_due[i] = both.len();
            } else {
                server.time(|| p.server_ctl.write_all(DONE))?;
                recv_exact(&mut client, &mut p.client_ctl, &mut buf, DONE.len())?;
                replies_due[i] = 0;
            }
        }
    }
    let cpu = cpu::cpu_seconds(libc::RUSAGE_THREAD) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / files as f64;
    println!(
        "{files} files of {size} bytes over {sessions} sessions: server calls {:.2} us/file \
         ({:.2} calls/file), client calls {:.2} us/file ({:.2} calls/file); thread CPU {:.2} us/file, \
         wall {:.2} us/file",
        per(server.time),
        server.calls as f64 / files as f64,
        per(client.time),
        client.calls as f64 / files as f64,
        cpu * 1e6 / files as f64,
        wall * 1e6 / files as f64,
    );
    Ok(())
}
