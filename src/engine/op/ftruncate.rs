//! Ftruncate (Linux 6.9+): cuts a resumed upload back to its restart offset. Owns only the fd.
//! On an older kernel (the runtime's probe says so) the same call is made directly, and the op
//! completes with its result without going through the ring.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};
use crate::engine::{direct, runtime};

pub struct Ftruncate {
    fd: SharedFd,
    len: u64,
}

// SAFETY: no pointers; the file's SharedFd is held until completion.
unsafe impl OpData for Ftruncate {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(fd::target(&self.fd), self.len).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

pub fn ftruncate(fd: &SharedFd, len: u64) -> Op<Ftruncate> {
    let data = Ftruncate {
        fd: fd.clone(),
        len,
    };
    if runtime::with(|rt| rt.caps().ring_ftruncate) {
        return Op::new(data);
    }
    let res = match direct::ftruncate(fd, len) {
        Ok(()) => 0,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    };
    // SAFETY: the direct call did what the SQE would have, and FTRUNCATE's result is 0 or an error:
    // it claims no memory or descriptor.
    unsafe { Op::completed(data, Cqe { res, flags: 0 }) }
}
