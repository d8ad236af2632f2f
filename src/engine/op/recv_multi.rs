//! Multishot recv with buffers selected from the core's provided-buffer ring (the registered pool).
//! Ownership: the kernel picks a pool buffer per completion; the item hands it to the caller as a
//! [`PoolBuf`] that returns to the ring when dropped. Completions nobody takes (stream dropped) have
//! their buffer recycled by `cleanup`.

use io_uring::{cqueue, opcode, squeue};

use super::{Cqe, MultiData, MultiOp};
use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::{self, SharedFd};
use crate::engine::runtime;

pub struct RecvMulti {
    fd: SharedFd,
    group: u16,
    /// One completion only (a plain recv selecting one buffer), for a read that is expected to
    /// bring everything wanted at once: it needs no cancel afterwards.
    once: bool,
}

/// One multishot recv completion.
pub enum Received {
    /// Bytes received into a pool buffer.
    Data(PoolBuf),
    /// The peer closed its side.
    Eof,
}

// SAFETY: the SQE carries no pointers: the kernel picks buffers from the core's provided-buffer
// ring, which the pool owns and which outlives the ring; each completion's buffer goes to the item
// or back to the ring through `cleanup` (only when the flags name one). The socket's SharedFd is
// held until the final completion.
unsafe impl MultiData for RecvMulti {
    type Item = std::io::Result<Received>;
    fn sqe(&mut self) -> squeue::Entry {
        if self.once {
            // Length 0 with a selected buffer: the kernel fills up to the buffer's own length.
            return opcode::Recv::new(fd::target(&self.fd), std::ptr::null_mut(), 0)
                .buf_group(self.group)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT);
        }
        opcode::RecvMulti::new(fd::target(&self.fd), self.group).build()
    }
    fn item(&mut self, cqe: Cqe) -> Self::Item {
        let buf = cqueue::buffer_select(cqe.flags).and_then(|bid| {
            runtime::current().and_then(|rt| {
                rt.bufpool()
                    .map(|p| p.take_selected(bid, cqe.res.max(0) as usize))
            })
        });
        match (cqe.result()?, buf) {
            (0, _) => Ok(Received::Eof),
            (_, Some(buf)) => Ok(Received::Data(buf)),
            (_, None) => Err(std::io::Error::other(
                "recv completion without a selected buffer",
            )),
        }
    }
    fn cleanup(_res: i32, flags: u32) {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if let Some(rt) = runtime::current() {
                if let Some(pool) = rt.bufpool() {
                    pool.recycle(bid);
                }
            }
        }
    }
}

/// Starts a multishot recv on `fd` selecting buffers from the core's pool. The stream ends on EOF, an
/// error, or when the pool ran dry (`ENOBUFS`: wait for buffers and start a new one).
pub fn recv_multi(fd: &SharedFd) -> MultiOp<RecvMulti> {
    start(fd, false)
}

/// One recv into one buffer of the core's pool, as a stream of a single item: what a MODE B file
/// of a few KiB needs (its blocks and EOF arrive together), without the cancel a multishot needs
/// when the file ends.
pub fn recv_once(fd: &SharedFd) -> MultiOp<RecvMulti> {
    start(fd, true)
}

fn start(fd: &SharedFd, once: bool) -> MultiOp<RecvMulti> {
    let group = runtime::with(|rt| rt.bufpool().map(|p| p.group()).unwrap_or(0));
    MultiOp::new(RecvMulti {
        fd: fd.clone(),
        group,
        once,
    })
}
