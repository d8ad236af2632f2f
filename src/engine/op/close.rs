//! Close through the ring, for descriptors whose close may be slow (a file with dirty pages on some
//! filesystems). Ownership: the op takes the descriptor; it is gone once submitted, and closed
//! directly if the ring refuses the SQE.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};

pub struct Close {
    fd: i32,
}

// SAFETY: no pointers; the descriptor is owned by the op and handed to the kernel, which closes it
// (or, if the SQE is never queued, `not_queued` closes it).
unsafe impl OpData for Close {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
    fn not_queued(&mut self) {
        // SAFETY: the op owns `fd` (taken from the OwnedFd given to `close`) and the kernel never
        // saw it, so this is its only close.
        drop(unsafe { OwnedFd::from_raw_fd(self.fd) });
    }
}

/// Closes `fd` asynchronously.
pub fn close(fd: OwnedFd) -> Op<Close> {
    Op::new(Close {
        fd: fd.into_raw_fd(),
    })
}
