//! Write and WRITE_FIXED at explicit offsets. Ownership: the Vec or pool buffer lives in the op data and
//! is handed back with the result, so a short write can be resumed from the same memory; a pool buffer
//! returns to the ring only after the kernel is done with it.

use std::ops::Range;
use std::rc::Rc;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::{self, SharedFd};

pub struct Write {
    fd: SharedFd,
    buf: Vec<u8>,
    start: usize,
    offset: u64,
}

// SAFETY: the kernel reads `buf[start..]` of the Vec the op owns (heap), which nothing writes or
// frees until completion; the file's SharedFd is held until then.
unsafe impl OpData for Write {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> squeue::Entry {
        let rest = self.buf.get(self.start..).unwrap_or(&[]);
        let len = rest.len().min(u32::MAX as usize) as u32;
        opcode::Write::new(fd::target(&self.fd), rest.as_ptr(), len)
            .offset(self.offset)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.result().map(|n| n as usize), self.buf)
    }
}

/// Writes `buf[start..]` at `offset` (u64::MAX: the current position, for pipes and sockets).
pub fn write(fd: &SharedFd, buf: Vec<u8>, start: usize, offset: u64) -> Op<Write> {
    Op::new(Write {
        fd: fd.clone(),
        buf,
        start,
        offset,
    })
}

/// Memory a write op may own and read from until its completion.
///
/// # Safety
/// `as_ref` must return the same bytes, at the same address, from when the op is submitted until
/// it completes, even as the value is moved (heap or a mapping, never inline), and nothing may
/// write them meanwhile.
pub unsafe trait WriteSource: AsRef<[u8]> + Unpin + 'static {}

/// A write of a whole owned buffer at `offset`: a page-aligned mapping written with O_DIRECT,
/// in large pieces. Ownership: the buffer lives in the op data until the completion.
pub struct WriteFrom<B: WriteSource> {
    fd: SharedFd,
    buf: B,
    offset: u64,
}

// SAFETY: the kernel reads the buffer's bytes, which its `WriteSource` contract keeps in place
// and unwritten until completion while the op owns it; the file's SharedFd is held until then.
unsafe impl<B: WriteSource> OpData for WriteFrom<B> {
    type Output = (std::io::Result<usize>, B);
    fn sqe(&mut self) -> squeue::Entry {
        let bytes = self.buf.as_ref();
        let len = bytes.len().min(u32::MAX as usize) as u32;
        opcode::Write::new(fd::target(&self.fd), bytes.as_ptr(), len)
            .offset(self.offset)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.result().map(|n| n as usize), self.buf)
    }
}

/// Writes all of `buf` at `offset` (one op; a short write is the caller's to resume).
pub fn write_from<B: WriteSource>(fd: &SharedFd, buf: B, offset: u64) -> Op<WriteFrom<B>> {
    Op::new(WriteFrom {
        fd: fd.clone(),
        buf,
        offset,
    })
}

pub struct WriteFixed {
    fd: SharedFd,
    buf: Rc<PoolBuf>,
    range: Range<usize>,
    offset: u64,
}

// SAFETY: the kernel reads `range` of a registered pool buffer (checked against its length, at its
// registered index); the op's Rc keeps the buffer out of the pool until completion, and its other
// holders only read it. The file's SharedFd is held until completion.
unsafe impl OpData for WriteFixed {
    type Output = (std::io::Result<usize>, Rc<PoolBuf>);
    fn sqe(&mut self) -> squeue::Entry {
        let part = self.buf.as_slice().get(self.range.clone()).unwrap_or(&[]);
        opcode::WriteFixed::new(
            fd::target(&self.fd),
            part.as_ptr(),
            part.len() as u32,
            self.buf.index(),
        )
        .offset(self.offset)
        .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.result().map(|n| n as usize), self.buf)
    }
}

/// Writes `buf[range]` (part of a registered buffer) at `offset`. The buffer is shared because one
/// received buffer can hold several payload runs (MODE B), each written by its own op; it returns to
/// the pool when the last op holding it completes.
pub fn write_fixed(
    fd: &SharedFd,
    buf: Rc<PoolBuf>,
    range: Range<usize>,
    offset: u64,
) -> Op<WriteFixed> {
    Op::new(WriteFixed {
        fd: fd.clone(),
        buf,
        range,
        offset,
    })
}
