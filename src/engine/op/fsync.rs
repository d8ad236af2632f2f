//! Fsync / fdatasync. Owns only the fd.

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct Fsync {
    fd: SharedFd,
    datasync: bool,
}

// SAFETY: no pointers; the file's SharedFd is held until completion.
unsafe impl OpData for Fsync {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(fd::target(&self.fd))
            .flags(flags)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn fsync(fd: &SharedFd, datasync: bool) -> Op<Fsync> {
    Op::new(Fsync {
        fd: fd.clone(),
        datasync,
    })
}
