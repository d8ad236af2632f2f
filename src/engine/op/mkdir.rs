//! Mkdirat. Ownership: the path CString lives in the op data until completion.

use std::ffi::CString;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct MkDirAt {
    dir: SharedFd,
    path: CString,
    mode: u32,
}

// SAFETY: the path points into a CString the op owns (heap, NUL-terminated); the directory's
// SharedFd is held until completion.
unsafe impl OpData for MkDirAt {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::MkDirAt::new(fd::target(&self.dir), self.path.as_ptr())
            .mode(self.mode)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn mkdirat(dir: &SharedFd, path: CString, mode: u32) -> Op<MkDirAt> {
    Op::new(MkDirAt {
        dir: dir.clone(),
        path,
        mode,
    })
}
