//! Read and READ_FIXED at explicit offsets. Ownership: the Vec (or pool buffer) lives in the op data
//! and is handed back with the result; the kernel writes only into its spare capacity (Vec) or its
//! registered memory (pool buffer).

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::{self, SharedFd};

pub struct Read {
    fd: SharedFd,
    buf: Vec<u8>,
    offset: u64,
}

impl OpData for Read {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.len();
        let spare = (self.buf.capacity() - len).min(u32::MAX as usize) as u32;
        // SAFETY: pointer arithmetic within the Vec's allocation (len <= capacity).
        let ptr = unsafe { self.buf.as_mut_ptr().add(len) };
        opcode::Read::new(fd::target(&self.fd), ptr, spare)
            .offset(self.offset)
            .build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = cqe.result().map(|n| n as usize);
        if let Ok(n) = res {
            let len = self.buf.len();
            // SAFETY: the kernel initialised `n` bytes of the spare capacity it was given.
            unsafe { self.buf.set_len(len + n) };
        }
        (res, self.buf)
    }
}

/// Reads into `buf`'s spare capacity (appending) from `offset` (u64::MAX: the current file position).
pub fn read(fd: &SharedFd, buf: Vec<u8>, offset: u64) -> Op<Read> {
    Op::new(Read {
        fd: fd.clone(),
        buf,
        offset,
    })
}

pub struct ReadFixed {
    fd: SharedFd,
    buf: PoolBuf,
    offset: u64,
}

impl OpData for ReadFixed {
    type Output = (std::io::Result<usize>, PoolBuf);
    fn sqe(&mut self) -> squeue::Entry {
        let cap = self.buf.capacity() as u32;
        opcode::ReadFixed::new(
            fd::target(&self.fd),
            self.buf.as_mut_ptr(),
            cap,
            self.buf.index(),
        )
        .offset(self.offset)
        .build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = cqe.result().map(|n| n as usize);
        if let Ok(n) = res {
            self.buf.set_len(n);
        }
        (res, self.buf)
    }
}

/// Reads into a registered buffer (replacing its contents) from `offset`.
pub fn read_fixed(fd: &SharedFd, buf: PoolBuf, offset: u64) -> Op<ReadFixed> {
    Op::new(ReadFixed {
        fd: fd.clone(),
        buf,
        offset,
    })
}
