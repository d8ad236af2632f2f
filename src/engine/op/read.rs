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

// SAFETY: the kernel writes into the spare capacity of the Vec the op owns (heap; `spare` states
// exactly that room), which nothing else touches until completion; `appended` trusts only a
// non-negative count, clamped to that room. The file's SharedFd is held until completion.
unsafe impl OpData for Read {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, spare) = super::spare(&mut self.buf);
        opcode::Read::new(fd::target(&self.fd), ptr, spare)
            .offset(self.offset)
            .build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = super::appended(&mut self.buf, cqe);
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

// SAFETY: the kernel writes into the registered pool buffer the op holds (its PoolBuf, not
// shared), within its capacity and at its registered index; the pool's memory outlives the ring.
// The file's SharedFd is held until completion.
unsafe impl OpData for ReadFixed {
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
