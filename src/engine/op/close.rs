//! Close through the ring, for descriptors whose close may be slow (a file with dirty pages on some
//! filesystems). Ownership: the op takes the descriptor; it is gone once submitted.

use std::os::fd::{IntoRawFd, OwnedFd};

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};

pub struct Close {
    fd: Option<i32>,
}

// SAFETY: no pointers; the descriptor is owned by the op and handed to the kernel, which closes it.
unsafe impl OpData for Close {
    type Output = std::io::Result<()>;
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd.take().unwrap_or(-1))).build()
    }
    fn complete(self, cqe: Cqe) -> Self::Output {
        cqe.result().map(drop)
    }
}

/// Closes `fd` asynchronously.
pub fn close(fd: OwnedFd) -> Op<Close> {
    Op::new(Close {
        fd: Some(fd.into_raw_fd()),
    })
}
