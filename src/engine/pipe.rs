//! A per-core pool of pipes for splice (socket -> pipe -> file).
//!
//! Creating a pipe and growing it costs two syscalls and a page allocation per upload; a small pool
//! reuses them. A pipe goes back to the pool only when it is known to be empty, otherwise stale bytes
//! would leak into the next file.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use super::fd::SharedFd;

pub struct PipePool {
    free: RefCell<Vec<Pipe>>,
    max: usize,
    size: usize,
}

/// A pipe's two ends and the capacity the kernel granted.
pub struct Pipe {
    pub read: SharedFd,
    pub write: SharedFd,
    pub capacity: usize,
}

impl PipePool {
    pub fn new(max: usize, size: usize) -> PipePool {
        PipePool {
            free: RefCell::new(Vec::new()),
            max,
            size,
        }
    }

    /// An empty pipe from the pool, or a new one.
    pub fn get(&self) -> io::Result<Pipe> {
        if let Some(p) = self.free.borrow_mut().pop() {
            return Ok(p);
        }
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Ask for a larger pipe; unprivileged processes may be refused beyond a total budget, which
        // only costs throughput, so keep whatever the kernel grants.
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                self.size as libc::c_int,
            )
        };
        // SAFETY: as above.
        let granted = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let capacity = if granted > 0 { granted as usize } else { 65536 };
        Ok(Pipe {
            read: Rc::new(read),
            write: Rc::new(write),
            capacity,
        })
    }

    /// Returns a pipe the caller has drained completely.
    pub fn put_empty(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.max {
            free.push(pipe);
        }
    }
}
