//! Fsetxattr (Linux 5.19+). Ownership: the name and the value live in the op data until
//! completion.

use std::ffi::CString;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct FSetXattr {
    fd: SharedFd,
    name: CString,
    value: Vec<u8>,
    flags: i32,
}

// SAFETY: the name points into a CString and the value into a Vec the op owns (heap, never
// resized while submitted); the kernel only reads them. The file's SharedFd is held until
// completion.
unsafe impl OpData for FSetXattr {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::FSetXattr::new(
            fd::target(&self.fd),
            self.name.as_ptr(),
            self.value.as_ptr().cast(),
            self.value.len() as u32,
        )
        .flags(self.flags)
        .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

/// Sets the extended attribute `name` of the open file `fd` to `value`.
pub fn fsetxattr(fd: &SharedFd, name: CString, value: Vec<u8>, flags: i32) -> Op<FSetXattr> {
    Op::new(FSetXattr {
        fd: fd.clone(),
        name,
        value,
        flags,
    })
}
