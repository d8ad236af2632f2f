//! Splice between a descriptor and a pipe (socket -> pipe -> file without copying through user space).
//! Owns both fds; no memory is shared with the kernel. io_uring runs splice in an io-wq worker.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct Splice {
    fd_in: SharedFd,
    off_in: i64,
    fd_out: SharedFd,
    off_out: i64,
    len: u32,
    flags: u32,
}

// SAFETY: no pointers (offsets are passed by value); both descriptors' SharedFds are held until
// completion.
unsafe impl OpData for Splice {
    type Output = std::io::Result<usize>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Splice::new(
            fd::target(&self.fd_in),
            self.off_in,
            fd::target(&self.fd_out),
            self.off_out,
            self.len,
        )
        .flags(self.flags)
        .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(|n| n as usize)
    }
}

/// Moves up to `len` bytes; an offset of -1 means "current position / not seekable" (sockets, pipes).
pub fn splice(
    fd_in: &SharedFd,
    off_in: i64,
    fd_out: &SharedFd,
    off_out: i64,
    len: u32,
) -> Op<Splice> {
    let flags = libc::SPLICE_F_MOVE;
    Op::new(Splice {
        fd_in: fd_in.clone(),
        off_in,
        fd_out: fd_out.clone(),
        off_out,
        len,
        flags,
    })
}
