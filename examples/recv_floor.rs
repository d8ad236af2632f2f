//! The CPU floor of receiving uploads over TCP, with no FTP and no file: what one thread spends to
//! accept a connection and read it to its end into one buffer, per GB, with the bytes thrown away.
//! Any server landing stream-mode (MODE S) uploads of that size pays at least this on loopback, so
//! a CPU-per-GB target below it cannot be met by any server on the machine.
//!
//! ```text
//! cargo run --release --example recv_floor -- [FILES] [SIZE] [SENDERS]   (defaults 2000 1048576 16)
//! ```
//!
//! The receiver is one thread taking connections one after another (blocking `accept` and `recv`
//! into a 1 MiB buffer); SENDERS threads each connect, send SIZE bytes and close, FILES times in
//! all. Only the receiver's own CPU is counted (`RUSAGE_THREAD`), from its first accept on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn thread_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to `ru`.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().map_or(2000, |s| s.parse().expect("FILES"));
    let size: usize = args
        .next()
        .map_or(1 << 20, |s| s.parse().expect("SIZE in bytes"));
    let senders: usize = args.next().map_or(16, |s| s.parse().expect("SENDERS"));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, f64)> {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let mut cpu0 = None;
        for _ in 0..files {
            let (mut s, _) = listener.accept()?;
            cpu0.get_or_insert_with(thread_cpu_seconds);
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
        Ok((total, thread_cpu_seconds() - cpu0.unwrap_or(0.0)))
    });
    let next = Arc::new(AtomicUsize::new(0));
    let data = Arc::new(vec![0x5a_u8; size]);
    let handles: Vec<_> = (0..senders)
        .map(|_| {
            let (next, data) = (next.clone(), data.clone());
            std::thread::spawn(move || -> std::io::Result<()> {
                while next.fetch_add(1, Ordering::Relaxed) < files {
                    let mut s = TcpStream::connect(addr)?;
                    s.write_all(&data)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("sender panicked")?;
    }
    let (total, cpu) = receiver.join().expect("receiver panicked")?;
    let gb = total as f64 / 1e9;
    println!(
        "{files} connections of {size} bytes, {senders} senders: receiver {:.3} CPU-s/GB ({:.2} GB)",
        cpu / gb,
        gb
    );
    Ok(())
}
