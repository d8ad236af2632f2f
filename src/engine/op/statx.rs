//! Statx. Ownership: the path and the boxed result buffer live in the op data until completion.

use std::ffi::CString;

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

/// The facts about a file the server needs, decoded from `struct statx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Its nanoseconds: a stored checksum is tied to the exact time (see `proto::checksum`).
    pub mtime_nsec: u32,
    pub ino: u64,
}

impl FileStat {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub fn is_file(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

pub struct Statx {
    dir: SharedFd,
    path: CString,
    flags: i32,
    buf: Box<libc::statx>,
}

// SAFETY: the path points into a CString and the result buffer into a Box<statx> the op owns
// (heap), written by the kernel only; `complete` reads it only after a successful result. The
// directory's SharedFd is held until completion.
unsafe impl OpData for Statx {
    type Output = std::io::Result<FileStat>;
    fn sqe(&mut self) -> squeue::Entry {
        let buf = &mut *self.buf as *mut libc::statx as *mut types::statx;
        opcode::Statx::new(fd::target(&self.dir), self.path.as_ptr(), buf)
            .flags(self.flags)
            .mask(libc::STATX_BASIC_STATS)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result()?;
        let s = &*self.buf;
        Ok(FileStat {
            size: s.stx_size,
            mode: u32::from(s.stx_mode),
            nlink: s.stx_nlink,
            uid: s.stx_uid,
            gid: s.stx_gid,
            mtime: s.stx_mtime.tv_sec,
            mtime_nsec: s.stx_mtime.tv_nsec,
            ino: s.stx_ino,
        })
    }
}

/// Stats `path` relative to `dir`; pass an empty path with AT_EMPTY_PATH to stat `dir` itself.
pub fn statx(dir: &SharedFd, path: CString, flags: i32) -> Op<Statx> {
    // SAFETY: `statx` is plain old data; all-zero is a valid value.
    let buf = Box::new(unsafe { std::mem::zeroed::<libc::statx>() });
    Op::new(Statx {
        dir: dir.clone(),
        path,
        flags,
        buf,
    })
}
