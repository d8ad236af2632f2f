//! Send from an owned Vec (bytes `start..` of it). Ownership: the Vec lives in the op data and is
//! handed back with the result. MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

/// The op data of [`send`]. Not named `Send`: that would shadow the `Send` trait wherever it is
/// imported.
pub struct SendBuf {
    fd: SharedFd,
    buf: Vec<u8>,
    start: usize,
}

// SAFETY: the kernel reads `buf[start..]` of the Vec the op owns (heap), which nothing writes or
// frees until completion; the socket's SharedFd is held until then.
unsafe impl OpData for SendBuf {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> squeue::Entry {
        let rest = self.buf.get(self.start..).unwrap_or(&[]);
        let len = rest.len().min(u32::MAX as usize) as u32;
        opcode::Send::new(fd::target(&self.fd), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        (cqe.result().map(|n| n as usize), self.buf)
    }
}

/// Sends `buf[start..]`; may send less (the caller loops).
pub fn send(fd: &SharedFd, buf: Vec<u8>, start: usize) -> Op<SendBuf> {
    Op::new(SendBuf {
        fd: fd.clone(),
        buf,
        start,
    })
}
