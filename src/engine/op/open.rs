//! Openat2: the jail's kernel half. With RESOLVE_IN_ROOT every path, including `..` and symlink
//! targets, resolves inside the directory `dir`, so no name can reach outside a user's root.
//! Ownership: path and `open_how` are heap memory in the op data; a late completion's fd is closed.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct OpenAt2 {
    dir: SharedFd,
    path: CString,
    how: Box<types::OpenHow>,
}

// SAFETY: the path and `open_how` point into a CString and a Box the op owns (heap); the
// directory's SharedFd is held until completion; a late completion's new fd is closed by `cleanup`,
// which ignores negative results.
unsafe impl OpData for OpenAt2 {
    type Output = std::io::Result<OwnedFd>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt2::new(fd::target(&self.dir), self.path.as_ptr(), &*self.how).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        fd::from_result(cqe.res)
    }
    fn cleanup(res: i32, _flags: u32) {
        fd::close_raw(res);
    }
}

/// Opens `path` beneath `dir` with `flags` (O_CLOEXEC is always added), `mode` for creation, and
/// `resolve` (RESOLVE_* flags).
pub fn openat2(dir: &SharedFd, path: CString, flags: i32, mode: u32, resolve: u64) -> Op<OpenAt2> {
    // openat2 is strict: a mode without O_CREAT/O_TMPFILE is EINVAL.
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let mode = if creates { u64::from(mode) } else { 0 };
    let how = types::OpenHow::new()
        .flags((flags | libc::O_CLOEXEC) as u64)
        .mode(mode)
        .resolve(resolve);
    Op::new(OpenAt2 {
        dir: dir.clone(),
        path,
        how: Box::new(how),
    })
}
