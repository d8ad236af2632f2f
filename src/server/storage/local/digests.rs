//! Checksums of stored files (CKSM, HASH, XCRC/XMD5/XSHA*): answered from the value stored with
//! the file by an inline upload (`user.ringest.<algo>`, see `landing`) when its size and
//! modification time still match the file's; otherwise, and for a part of a file, computed by
//! reading the file on the blocking pool, which is logged (a stored value that no longer fits, or
//! a file that came from elsewhere, costs a second read of the whole file). A whole-file value
//! computed that way is stored for the next time, unless the file changed during the read.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::fd::SharedFd;
use crate::engine::{blocking, direct};
use crate::proto::checksum::{attr_name, Algo, Digest, Stored};
use crate::proto::path::VPath;
use crate::proto::session::FsOutcome;

use super::jail::open;

/// How a digest was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The stored value, still fresh.
    Stored,
    /// By reading the file: why no stored value served.
    Read(&'static str),
}

/// The digest of `length` bytes (`None`: to the end) of `path` from `offset`.
pub async fn checksum(
    root: &SharedFd,
    path: &VPath,
    algo: Algo,
    offset: u64,
    length: Option<u64>,
) -> io::Result<FsOutcome> {
    // Non-blocking: a FIFO must not block the worker; regular files ignore the flag.
    let fd = open(
        root,
        path,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .await?;
    let (hex, end, source) =
        blocking::spawn_blocking(move || digest_of(&fd, algo, offset, length)).await??;
    if let Source::Read(why) = source {
        tracing::info!(path = %path, algo = %algo, offset, bytes = end - offset, why, "checksum computed by reading the file");
    }
    Ok(FsOutcome::Checksum { hex, end })
}

struct Stat {
    size: u64,
    mtime: (i64, u32),
    regular: bool,
    dir: bool,
}

fn fstat(fd: &OwnedFd) -> io::Result<Stat> {
    // SAFETY: `stat` is plain old data (all-zero valid) and fstat only writes it during the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` a valid, writable stat buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let fmt = st.st_mode & libc::S_IFMT;
    Ok(Stat {
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        regular: fmt == libc::S_IFREG,
        dir: fmt == libc::S_IFDIR,
    })
}

/// On a blocking worker: the stored value if fresh, else a read of the range.
fn digest_of(
    fd: &OwnedFd,
    algo: Algo,
    offset: u64,
    length: Option<u64>,
) -> io::Result<(String, u64, Source)> {
    let st = fstat(fd)?;
    if st.dir {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !st.regular {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    if offset > st.size {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let end = match length {
        Some(l) => offset.saturating_add(l).min(st.size),
        None => st.size,
    };
    let whole = offset == 0 && end == st.size;
    let name =
        CString::new(attr_name(algo)).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let why = if !whole {
        "a part of the file"
    } else {
        let mut buf = [0u8; 256];
        match direct::fgetxattr(fd, &name, &mut buf) {
            Ok(n) => match Stored::parse(algo, buf.get(..n).unwrap_or_default()) {
                Some(v) => match v.fresh_for(st.size, st.mtime.0, st.mtime.1) {
                    Some(hex) => return Ok((hex.to_owned(), end, Source::Stored)),
                    None => "the stored value is stale (size or mtime changed)",
                },
                None => "the stored value is unreadable",
            },
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => "no stored value",
            Err(_) => "stored values unavailable here",
        }
    };
    let hex = read_range(fd, algo, offset, end)?;
    if whole {
        // Stored only if the file did not change while it was read.
        if let Ok(after) = fstat(fd) {
            if after.size == st.size && after.mtime == st.mtime {
                let value = Stored {
                    size: st.size,
                    mtime_sec: st.mtime.0,
                    mtime_nsec: st.mtime.1,
                    hex: hex.clone(),
                };
                if let Err(e) = direct::fsetxattr(fd, &name, value.encode().as_bytes()) {
                    store_failed(&e);
                }
            }
        }
    }
    Ok((hex, end, Source::Read(why)))
}

/// Reads `offset..end` through a 1 MiB buffer into the digest.
fn read_range(fd: &OwnedFd, algo: Algo, offset: u64, end: u64) -> io::Result<String> {
    let mut d = Digest::new(algo);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = offset;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        // SAFETY: `buf` is writable for `want` <= its length bytes during the call; `fd` is open.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                want,
                at as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            // The file shrank while read: the range asked for is gone.
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let n = n as usize;
        d.update(buf.get(..n).unwrap_or_default());
        at += n as u64;
    }
    Ok(d.finish())
}

/// The stored values still fresh for the open file `fd`: read before its modification time is
/// set (MFMT, SITE UTIME), which changes no byte, so [`restamp`] can carry them over to the new
/// time instead of leaving them stale (a mirror that sets times after each upload would otherwise
/// turn every checksum into a second read). Metadata calls of microseconds, on the core thread
/// like the `futimens` they surround.
pub fn fresh_values(fd: &OwnedFd) -> Vec<(Algo, String)> {
    let Ok(st) = fstat(fd) else {
        return Vec::new();
    };
    if !st.regular {
        return Vec::new();
    }
    let mut out = Vec::new();
    for algo in Algo::ALL {
        let Ok(name) = CString::new(attr_name(algo)) else {
            continue;
        };
        let mut buf = [0u8; 256];
        if let Ok(n) = direct::fgetxattr(fd, &name, &mut buf) {
            if let Some(v) = Stored::parse(algo, buf.get(..n).unwrap_or_default()) {
                if let Some(hex) = v.fresh_for(st.size, st.mtime.0, st.mtime.1) {
                    out.push((algo, hex.to_owned()));
                }
            }
        }
    }
    out
}

/// Stores `values` (from [`fresh_values`]) again with the file's current size and time.
pub fn restamp(fd: &OwnedFd, values: Vec<(Algo, String)>) {
    if values.is_empty() {
        return;
    }
    let Ok(st) = fstat(fd) else {
        return;
    };
    for (algo, hex) in values {
        let Ok(name) = CString::new(attr_name(algo)) else {
            continue;
        };
        let v = Stored {
            size: st.size,
            mtime_sec: st.mtime.0,
            mtime_nsec: st.mtime.1,
            hex,
        };
        if let Err(e) = direct::fsetxattr(fd, &name, v.encode().as_bytes()) {
            store_failed(&e);
            return;
        }
    }
}

static STORE_FAILED: AtomicBool = AtomicBool::new(false);

/// A stored checksum could not be written (no user xattrs on this file system, a full inode):
/// said once per process, since it will be the same for every file; checksums are then computed
/// by reading whenever they are asked for.
pub fn store_failed(e: &io::Error) {
    if !STORE_FAILED.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "cannot store checksums with files (extended attributes); they will be computed by reading the file when asked for");
    } else {
        tracing::debug!(error = %e, "checksum not stored");
    }
}
