//! File descriptors shared between their owner and the ops in flight on them.
//!
//! An op resolves its fd number when the kernel sees the SQE, which may be after the owning task has
//! dropped the socket or file; if the number were closed and reused meanwhile, the op would hit another
//! connection. So every op holds a clone of the [`SharedFd`] and the descriptor closes only when the
//! last op using it has completed.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

/// A reference-counted owned descriptor; closes when the owner and all ops on it are gone.
pub type SharedFd = Rc<OwnedFd>;

/// The io_uring form of a shared descriptor.
pub fn target(fd: &SharedFd) -> io_uring::types::Fd {
    io_uring::types::Fd(fd.as_raw_fd())
}

/// The raw number, for synchronous syscalls.
pub fn raw(fd: &SharedFd) -> RawFd {
    fd.as_raw_fd()
}

/// Closes a raw descriptor that a late completion produced and nobody will take.
pub(crate) fn close_raw(res: i32) {
    if res >= 0 {
        // SAFETY: `res` is a descriptor the kernel just created for an op whose owner is gone, so
        // nothing else refers to it.
        unsafe { libc::close(res) };
    }
}

/// Wraps a descriptor returned by a successful completion.
pub(crate) fn from_result(res: i32) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    if res < 0 {
        return Err(std::io::Error::from_raw_os_error(-res));
    }
    // SAFETY: a non-negative result of accept/openat is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(res) })
}

/// A new eventfd (counter 0, close-on-exec): how another thread wakes a core without touching its
/// ring; the core reads it with a ring op.
pub fn eventfd() -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain eventfd(2).
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Signals an eventfd (adds 1); callable from any thread.
pub fn signal_eventfd(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a descriptor the caller owns.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}
