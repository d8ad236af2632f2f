//! One-shot poll for readiness. Owns only the fd; no memory is shared with the kernel.
//!
//! Used where the work itself is done by a direct system call once the descriptor is ready (splice
//! from a socket inline): io_uring cannot poll-arm a splice, it hands it to an io-wq worker.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::fd::{self, SharedFd};

/// The op data of [`poll`]. Not named `Poll`: that would shadow `std::task::Poll` wherever it is
/// imported.
pub struct PollReady {
    fd: SharedFd,
    mask: u32,
}

// SAFETY: no pointers; the polled descriptor's SharedFd is held until completion.
unsafe impl OpData for PollReady {
    /// The ready events (`POLLIN`, `POLLRDHUP`, `POLLERR`, ...).
    type Output = std::io::Result<u32>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(fd::target(&self.fd), self.mask).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result()
    }
}

/// Completes once `fd` has one of the events in `mask` (errors and hang-ups always count).
pub fn poll(fd: &SharedFd, mask: u32) -> Op<PollReady> {
    Op::new(PollReady {
        fd: fd.clone(),
        mask,
    })
}
