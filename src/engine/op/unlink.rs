//! Unlinkat (files, or directories with AT_REMOVEDIR). Ownership: the path CString lives in the op.

use std::ffi::CString;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct UnlinkAt {
    dir: SharedFd,
    path: CString,
    flags: i32,
}

// SAFETY: the path points into a CString the op owns (heap, NUL-terminated); the directory's
// SharedFd is held until completion.
unsafe impl OpData for UnlinkAt {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::UnlinkAt::new(fd::target(&self.dir), self.path.as_ptr())
            .flags(self.flags)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn unlinkat(dir: &SharedFd, path: CString, flags: i32) -> Op<UnlinkAt> {
    Op::new(UnlinkAt {
        dir: dir.clone(),
        path,
        flags,
    })
}
