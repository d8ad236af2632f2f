//! Linkat: gives a file a (new) name, e.g. landing an O_TMPFILE. Ownership: both paths are CStrings
//! in the op data, alive until completion.

use std::ffi::CString;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct LinkAt {
    olddir: SharedFd,
    old: CString,
    newdir: SharedFd,
    new: CString,
    flags: i32,
}

// SAFETY: both paths point into CStrings the op owns (heap, NUL-terminated); both directories'
// SharedFds are held until completion.
unsafe impl OpData for LinkAt {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::LinkAt::new(
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

pub fn linkat(
    olddir: &SharedFd,
    old: CString,
    newdir: &SharedFd,
    new: CString,
    flags: i32,
) -> Op<LinkAt> {
    Op::new(LinkAt {
        olddir: olddir.clone(),
        old,
        newdir: newdir.clone(),
        new,
        flags,
    })
}
