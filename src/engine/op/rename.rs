//! Renameat(2): lands a finished upload under its final name atomically. Ownership: both paths are
//! CStrings in the op data.

use std::ffi::CString;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct RenameAt {
    olddir: SharedFd,
    old: CString,
    newdir: SharedFd,
    new: CString,
    flags: u32,
}

// SAFETY: both paths point into CStrings the op owns (heap, NUL-terminated); both directories'
// SharedFds are held until completion.
unsafe impl OpData for RenameAt {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::RenameAt::new(
            fd::target(&self.olddir),
            self.old.as_ptr(),
            fd::target(&self.newdir),
            self.new.as_ptr(),
        )
        .flags(self.flags)
        .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

/// `flags` as renameat2(2): 0 replaces the target, RENAME_NOREPLACE refuses an existing one.
pub fn renameat(
    olddir: &SharedFd,
    old: CString,
    newdir: &SharedFd,
    new: CString,
    flags: u32,
) -> Op<RenameAt> {
    Op::new(RenameAt {
        olddir: olddir.clone(),
        old,
        newdir: newdir.clone(),
        new,
        flags,
    })
}
