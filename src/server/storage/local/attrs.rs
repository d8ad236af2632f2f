//! Changing a stored file's attributes rather than its bytes: its modification time (MFMT, the
//! two-argument MDTM, SITE UTIME) so mirrors keep their timestamps, and its mode (SITE CHMOD)
//! within the server's mask, so `lftp mirror -R` runs without errors.
//!
//! The file is opened through the jail (`openat2` with `RESOLVE_IN_ROOT`, so a symlink cannot lead
//! outside the user's root) and changed through that descriptor (`futimens`, `fchmod`), never by
//! path, so nothing can swap the name between the check and the change. io_uring has no op for
//! either call; both are metadata updates that finish in microseconds, so they run directly on the
//! core thread.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use crate::engine::fd::SharedFd;
use crate::engine::op;
use crate::proto::path::VPath;

use super::jail::open;

/// Opens `path` so that its attributes can be changed: read-only and non-blocking (a FIFO must not
/// block the core), write-only for a file whose mode does not let its owner read it. Only regular
/// files and directories are accepted.
async fn open_target(root: &SharedFd, path: &VPath) -> io::Result<SharedFd> {
    let base = libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = match open(root, path, libc::O_RDONLY | base, 0).await {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            open(root, path, libc::O_WRONLY | base, 0).await?
        }
        other => other?,
    };
    let fd: SharedFd = Rc::new(fd);
    let st = op::statx::statx(&fd, CString::default(), libc::AT_EMPTY_PATH).await?;
    if !st.is_file() && !st.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(fd)
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets the modification time of `path` to `mtime` (seconds since the epoch) and its access time to
/// `atime` when given (left as it is otherwise).
pub async fn set_times(
    root: &SharedFd,
    path: &VPath,
    mtime: i64,
    atime: Option<i64>,
) -> io::Result<()> {
    let fd = open_target(root, path).await?;
    let spec = |t: Option<i64>| libc::timespec {
        tv_sec: t.unwrap_or(0) as libc::time_t,
        tv_nsec: if t.is_some() { 0 } else { libc::UTIME_OMIT },
    };
    let times = [spec(atime), spec(Some(mtime))];
    // Checksums stored with the file stay true: only its time changes.
    let kept = super::digests::fresh_values(&fd);
    // SAFETY: `fd` is an open descriptor and `times` two initialised timespecs, as futimens takes.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    super::digests::restamp(&fd, kept);
    Ok(())
}

/// Sets the permission bits of `path` to `mode & mask` and returns them. A zero mask means SITE
/// CHMOD is switched off: EPERM. The setuid, setgid and sticky bits can only be set if the mask
/// has them, which the default (`0777`) does not.
pub async fn chmod(root: &SharedFd, path: &VPath, mode: u32, mask: u32) -> io::Result<u32> {
    if mask == 0 {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    let fd = open_target(root, path).await?;
    let applied = mode & mask & 0o7777;
    // SAFETY: fchmod on an open descriptor; the mode is a plain integer.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), applied as libc::mode_t) })?;
    Ok(applied)
}
