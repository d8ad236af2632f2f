//! Fallocate: reserve file space up front (ALLO, and large uploads), so a full disk is reported before
//! the data arrives. Owns only the fd.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct Fallocate {
    fd: SharedFd,
    offset: u64,
    len: u64,
    mode: i32,
}

// SAFETY: no pointers; the file's SharedFd is held until completion.
unsafe impl OpData for Fallocate {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Fallocate::new(fd::target(&self.fd), self.len)
            .offset(self.offset)
            .mode(self.mode)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

/// Allocates `len` bytes at `offset`; `mode` as fallocate(2) (0, or FALLOC_FL_KEEP_SIZE).
pub fn fallocate(fd: &SharedFd, offset: u64, len: u64, mode: i32) -> Op<Fallocate> {
    Op::new(Fallocate {
        fd: fd.clone(),
        offset,
        len,
        mode,
    })
}
