//! Ftruncate (Linux 6.9+): cuts a resumed upload back to its restart offset. Owns only the fd.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct Ftruncate {
    fd: SharedFd,
    len: u64,
}

// SAFETY: no pointers; the file's SharedFd is held until completion.
unsafe impl OpData for Ftruncate {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(fd::target(&self.fd), self.len).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn ftruncate(fd: &SharedFd, len: u64) -> Op<Ftruncate> {
    Op::new(Ftruncate {
        fd: fd.clone(),
        len,
    })
}
