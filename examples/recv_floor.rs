//! The CPU floor of receiving uploads over TCP, with no FTP: what one thread spends to accept a
//! connection and read it to its end, per GB, either throwing the bytes away or landing each
//! connection in a file of its own the three ways a server can. Any server landing stream-mode
//! (MODE S) uploads of that size the same way pays at least this on loopback, so a CPU-per-GB
//! target below it cannot be met by any server on the machine.
//!
//! ```text
//! cargo run --release --example recv_floor -- [--keep] [FILES] [SIZE] [SENDERS] [discard | write|splice|direct DIR]
//!     (defaults 2000 1048576 16 discard)
//! ```
//!
//! The receiver is one thread taking connections one after another (blocking `accept` and reads);
//! SENDERS threads each connect, send SIZE bytes and close, FILES times in all. Only the
//! receiver's own CPU is counted (`RUSAGE_THREAD`), from its first accept on. The landing modes
//! create one file per connection in DIR (which must exist; the files are removed afterwards, not
//! counted, unless `--keep` is given). On ext4, run each measurement in a new directory and keep
//! the files until a minute has passed: creating files right after many were deleted makes ext4
//! scan past the recently deleted inodes (`recently_deleted`), which then dominates the profile.
//!
//! - `write`: `read` into a 1 MiB buffer, buffered `write` (what most FTP servers do);
//! - `splice`: socket to pipe to file, buffered, no copy through user space (ringest's splice path);
//! - `direct`: `read` into a page-aligned 1 MiB buffer, `O_DIRECT` writes of full buffers, the
//!   unaligned tail written after clearing `O_DIRECT` (ringest's direct path).
//!
//! Nothing here names files atomically, checks anything or speaks FTP: the figures are a floor.

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[path = "common/cpu.rs"]
mod cpu;

const BUF: usize = 1 << 20;

fn check(r: isize) -> std::io::Result<usize> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Discard,
    Write,
    Splice,
    Direct,
}

/// A page-aligned buffer, as O_DIRECT needs (a `Vec<u8>` gives no alignment).
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Aligned { ptr, layout }
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` holds `layout.size()` initialised bytes, owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

fn create(dir: &str, i: usize, direct: bool) -> std::io::Result<OwnedFd> {
    let path = CString::new(format!("{dir}/f{i}")).expect("no NUL in DIR");
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC;
    let flags = if direct {
        flags | libc::O_DIRECT
    } else {
        flags
    };
    // SAFETY: valid NUL-terminated path; the result is checked.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags, 0o644) } as isize)?;
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn write_all(fd: &OwnedFd, mut data: &[u8], mut off: i64) -> std::io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a live slice; the result is checked.
        let n =
            check(unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), off) })?;
        data = &data[n..];
        off += n as i64;
    }
    Ok(())
}

/// Reads one connection to its end, landing it as `mode` says; returns the bytes read.
fn receive(
    mode: Mode,
    s: &mut TcpStream,
    file: Option<&OwnedFd>,
    buf: &mut [u8],
    pipe: &[OwnedFd; 2],
) -> std::io::Result<u64> {
    let mut total = 0u64;
    match mode {
        Mode::Discard | Mode::Write => loop {
            let n = s.read(buf)?;
            if n == 0 {
                return Ok(total);
            }
            if let Some(f) = file {
                write_all(f, &buf[..n], total as i64)?;
            }
            total += n as u64;
        },
        Mode::Splice => {
            let f = file.expect("splice lands in a file");
            let mut off = 0i64;
            loop {
                let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE;
                // SAFETY: valid descriptors, null offsets for the socket and the pipe.
                let n = check(unsafe {
                    libc::splice(
                        s.as_raw_fd(),
                        std::ptr::null_mut(),
                        pipe[1].as_raw_fd(),
                        std::ptr::null_mut(),
                        BUF,
                        flags,
                    )
                })?;
                if n == 0 {
                    return Ok(total);
                }
                let mut left = n;
                while left > 0 {
                    // SAFETY: valid descriptors; `off` is a live i64 the call advances.
                    left -= check(unsafe {
                        libc::splice(
                            pipe[0].as_raw_fd(),
                            std::ptr::null_mut(),
                            f.as_raw_fd(),
                            &mut off,
                            left,
                            flags,
                        )
                    })?;
                }
                total += n as u64;
            }
        }
        Mode::Direct => {
            let f = file.expect("direct lands in a file");
            let mut fill = 0;
            loop {
                let n = s.read(&mut buf[fill..])?;
                fill += n;
                if fill == buf.len() {
                    write_all(f, buf, total as i64)?;
                    total += fill as u64;
                    fill = 0;
                }
                if n == 0 {
                    break;
                }
            }
            let whole = fill / 4096 * 4096;
            write_all(f, &buf[..whole], total as i64)?;
            if whole < fill {
                // SAFETY: plain fcntl on a descriptor we own; the result is checked.
                let fl = check(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) } as isize)?;
                // SAFETY: as above; only O_DIRECT is cleared, so the tail need not be aligned.
                check(unsafe {
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl as i32 & !libc::O_DIRECT)
                } as isize)?;
                write_all(f, &buf[whole..fill], (total + whole as u64) as i64)?;
            }
            Ok(total + fill as u64)
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let keep = args.next_if(|a| a == "--keep").is_some();
    let files: usize = args.next().map_or(2000, |s| s.parse().expect("FILES"));
    let size: usize = args
        .next()
        .map_or(1 << 20, |s| s.parse().expect("SIZE in bytes"));
    let senders: usize = args.next().map_or(16, |s| s.parse().expect("SENDERS"));
    let mode = match args.next().as_deref() {
        None | Some("discard") => Mode::Discard,
        Some("write") => Mode::Write,
        Some("splice") => Mode::Splice,
        Some("direct") => Mode::Direct,
        Some(m) => panic!("unknown mode {m}: discard, write, splice or direct"),
    };
    let dir = args.next();
    assert!(
        (mode == Mode::Discard) == dir.is_none(),
        "write, splice and direct need a DIR (and discard takes none)"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let rdir = dir.clone();
    let receiver = std::thread::Builder::new().name("receiver".into()).spawn(
        move || -> std::io::Result<(u64, f64)> {
            let mut buf = Aligned::new(BUF);
            let mut fds = [0i32; 2];
            // SAFETY: `fds` has room for the two descriptors; the result is checked.
            check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize)?;
            // SAFETY: two new descriptors we own.
            let pipe = unsafe { [OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])] };
            // SAFETY: plain fcntl on our pipe; a smaller pipe only means more splice calls.
            unsafe { libc::fcntl(pipe[1].as_raw_fd(), libc::F_SETPIPE_SZ, BUF as i32) };
            let mut total = 0u64;
            let mut cpu0 = None;
            for i in 0..files {
                let (mut s, _) = listener.accept()?;
                cpu0.get_or_insert_with(|| cpu::cpu_seconds(libc::RUSAGE_THREAD));
                let file = match &rdir {
                    Some(d) => Some(create(d, i, mode == Mode::Direct)?),
                    None => None,
                };
                total += receive(mode, &mut s, file.as_ref(), buf.slice(), &pipe)?;
            }
            Ok((
                total,
                cpu::cpu_seconds(libc::RUSAGE_THREAD) - cpu0.unwrap_or(0.0),
            ))
        },
    )?;
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
    if let Some(d) = dir.as_ref().filter(|_| !keep) {
        for i in 0..files {
            let _ = std::fs::remove_file(format!("{d}/f{i}"));
        }
    }
    let gb = total as f64 / 1e9;
    let how = match mode {
        Mode::Discard => "discarded",
        Mode::Write => "read + buffered write",
        Mode::Splice => "spliced to files",
        Mode::Direct => "read + O_DIRECT write",
    };
    println!(
        "{files} connections of {size} bytes, {senders} senders, {how}: receiver {:.3} CPU-s/GB ({:.2} GB)",
        cpu / gb,
        gb
    );
    Ok(())
}
