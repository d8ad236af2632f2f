//! Single-shot recv into an owned Vec's spare capacity. Ownership: the Vec lives in the op data and is
//! handed back with the result.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

pub struct Recv {
    fd: SharedFd,
    buf: Vec<u8>,
}

// SAFETY: the kernel writes into the spare capacity of the Vec the op owns (heap; `spare` states
// exactly that room), which nothing else touches until completion; `appended` trusts only a
// non-negative count, clamped to that room. The socket's SharedFd is held until completion.
unsafe impl OpData for Recv {
    type Output = (std::io::Result<usize>, Vec<u8>);
    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, spare) = super::spare(&mut self.buf);
        opcode::Recv::new(fd::target(&self.fd), ptr, spare).build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = super::appended(&mut self.buf, cqe);
        (res, self.buf)
    }
}

impl Recv {
    /// The op's data, for submitting with [`Op::with_timeout`].
    pub fn new(fd: &SharedFd, buf: Vec<u8>) -> Recv {
        Recv {
            fd: fd.clone(),
            buf,
        }
    }
}

/// Receives into `buf`'s spare capacity (appending); `Ok(0)` is end of stream.
pub fn recv(fd: &SharedFd, buf: Vec<u8>) -> Op<Recv> {
    Op::new(Recv::new(fd, buf))
}
