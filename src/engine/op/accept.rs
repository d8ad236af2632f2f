//! Multishot accept: one SQE yields a connection per completion until cancelled or failed.
//! Ownership: the listener's fd is held by the op; each completion's fd is owned by whoever takes the
//! item (or closed by `cleanup` if the stream was dropped first).

use std::os::fd::OwnedFd;

use io_uring::{opcode, squeue};

use super::{Cqe, MultiData, MultiOp};
use crate::engine::fd::{self, SharedFd};

pub struct AcceptMulti {
    listener: SharedFd,
}

// SAFETY: the SQE carries no pointers (no peer address is asked for) and names the listener, whose
// SharedFd the op holds until the final completion; each completion's new fd goes to the item or
// to `cleanup`, which closes only a non-negative result.
unsafe impl MultiData for AcceptMulti {
    type Item = std::io::Result<OwnedFd>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::AcceptMulti::new(fd::target(&self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
    }
    fn item(&mut self, cqe: Cqe) -> Self::Item {
        fd::from_result(cqe.res)
    }
    fn cleanup(res: i32, _flags: u32) {
        fd::close_raw(res);
    }
}

/// Starts accepting on `listener`; the stream ends when the kernel ends the multishot (then re-arm).
pub fn accept_multi(listener: &SharedFd) -> MultiOp<AcceptMulti> {
    MultiOp::new(AcceptMulti {
        listener: listener.clone(),
    })
}
