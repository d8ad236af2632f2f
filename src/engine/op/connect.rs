//! Connect a socket. Ownership: the boxed sockaddr lives in the op data until completion.

use std::net::SocketAddr;

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};
use crate::engine::sockaddr::SockAddr;

pub struct Connect {
    fd: SharedFd,
    addr: Box<SockAddr>,
}

// SAFETY: the address points into the boxed SockAddr the op owns (heap, so it does not move with
// the op) and its length is that SockAddr's; the socket's SharedFd is held until completion.
unsafe impl OpData for Connect {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(fd::target(&self.fd), self.addr.as_ptr(), self.addr.len()).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn connect(fd: &SharedFd, addr: SocketAddr) -> Op<Connect> {
    Op::new(Connect {
        fd: fd.clone(),
        addr: Box::new(SockAddr::from(addr)),
    })
}
