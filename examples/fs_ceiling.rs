//! The file-system ceiling for small-file ingest on this machine: how many files per second can be
//! created, written and named with no network and no FTP at all, the way ringest lands an upload
//! (O_TMPFILE in the target directory, one pwrite, linkat to the final name, close).
//!
//! Any FTP server, in any transfer mode, must do at least this per file, so no MODE B (or MODE S)
//! figure can exceed it. Run with the machine otherwise idle:
//!
//! ```text
//! cargo run --release --example fs_ceiling -- [--keep] DIR [FILES] [SIZE] [THREADS]
//! ```
//!
//! DIR must be on the file system under test and must not exist yet (each run writes into a new
//! directory, like the benchmark harness). The program says where it wrote, and removes DIR and its
//! files after the measurement unless `--keep` is given (to look at them, or to measure on a
//! directory that already holds many files). Built like the rest of the workspace, it honours
//! `CARGO_TARGET_DIR`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

#[path = "common/cpu.rs"]
mod cpu;

fn land(dir: &OwnedFd, name: &CString, data: &[u8]) -> std::io::Result<()> {
    let dot = c".";
    // SAFETY: valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            dot.as_ptr(),
            libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `data` is a live slice of the given length.
    let n = unsafe { libc::pwrite(file.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
    if n != data.len() as isize {
        return Err(std::io::Error::other("short write"));
    }
    let empty = c"";
    // SAFETY: valid NUL-terminated paths; AT_EMPTY_PATH links the open file itself.
    let r = unsafe {
        libc::linkat(
            file.as_raw_fd(),
            empty.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let keep = all.iter().any(|a| a == "--keep");
    let mut args = all.into_iter().filter(|a| a != "--keep");
    let dir = PathBuf::from(
        args.next()
            .expect("usage: fs_ceiling [--keep] DIR [FILES] [SIZE] [THREADS]"),
    );
    let files: usize = args.next().map_or(100_000, |s| s.parse().expect("FILES"));
    let size: usize = args
        .next()
        .map_or(4096, |s| s.parse().expect("SIZE in bytes"));
    let threads: usize = args.next().map_or(2, |s| s.parse().expect("THREADS"));
    std::fs::create_dir(&dir)?;
    let c = CString::new(dir.as_os_str().as_encoded_bytes()).expect("no NUL in DIR");
    // SAFETY: valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    let dir_fd = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
    let cpu0 = cpu::cpu_seconds(libc::RUSAGE_SELF);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let dir_fd = dir_fd.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let data = vec![0x5a_u8; size];
                for i in (t..files).step_by(threads) {
                    let name = CString::new(format!("f{i}")).expect("no NUL");
                    land(&dir_fd, &name, &data)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked")?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu::cpu_seconds(libc::RUSAGE_SELF) - cpu0;
    println!(
        "{files} files of {size} bytes, {threads} threads: {:.0} files/s, {:.1} us CPU per file",
        files as f64 / secs,
        cpu / files as f64 * 1e6
    );
    drop(dir_fd);
    if keep {
        println!("wrote {files} files under {} (kept)", dir.display());
    } else {
        std::fs::remove_dir_all(&dir)?;
        println!(
            "wrote {files} files under {}, removed them (--keep keeps them)",
            dir.display()
        );
    }
    Ok(())
}
