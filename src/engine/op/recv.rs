//! Single-shot recv into an owned Vec's spare capacity. Ownership: the Vec lives in the op data and is
//! handed back with the result.

use io_uring::{opcode, squeue};

use super::{Cqe, Op, OpData};
use crate::engine::bufpool::PoolBuf;
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

/// Receives into a registered pool buffer after its first `len()` bytes (up to its capacity), for
/// paths that fill a buffer completely and then write it with WRITE_FIXED. Ownership: the
/// [`PoolBuf`] lives in the op data until the completion and comes back with the result, its length
/// grown by the bytes received.
pub struct RecvBuf {
    fd: SharedFd,
    buf: PoolBuf,
}

// SAFETY: the kernel writes into the registered pool buffer the op owns (a fixed mapping that does
// not move with the op data), after its first `len()` bytes and within its capacity, which nothing
// else touches until completion; `complete` trusts only a non-negative count, clamped to the
// capacity by `set_len`. The socket's SharedFd is held until completion.
unsafe impl OpData for RecvBuf {
    type Output = (std::io::Result<usize>, PoolBuf);
    fn sqe(&mut self) -> squeue::Entry {
        let filled = self.buf.len();
        let room = (self.buf.capacity() - filled).min(u32::MAX as usize) as u32;
        // SAFETY: `filled <= capacity`, so the pointer stays within the buffer.
        let ptr = unsafe { self.buf.as_mut_ptr().add(filled) };
        opcode::Recv::new(fd::target(&self.fd), ptr, room).build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = cqe.result().map(|n| n as usize);
        if let Ok(n) = res {
            // The kernel never reports more than the room it was given; `set_len` clamps anyway.
            let filled = self.buf.len();
            self.buf.set_len(filled + n);
        }
        (res, self.buf)
    }
}

/// Receives into the rest of `buf` (after its current length); `Ok(0)` is end of stream.
pub fn recv_into(fd: &SharedFd, buf: PoolBuf) -> Op<RecvBuf> {
    Op::new(RecvBuf {
        fd: fd.clone(),
        buf,
    })
}

/// A buffer a recv may append to, owned by the op until its completion.
///
/// # Safety
/// `room` must describe memory that belongs to the buffer, stays at the same address while the
/// buffer is moved (heap or a mapping, never inline), and is not read or written through anything
/// else until `appended` is called; `appended(n)` is called with `n` no larger than that room.
pub unsafe trait AppendBuf: Unpin + 'static {
    /// Where appended bytes go, and how many may.
    fn room(&mut self) -> (*mut u8, usize);
    /// The kernel wrote `n` bytes into the room.
    fn appended(&mut self, n: usize);
}

/// Receives into an [`AppendBuf`]'s room (for an object store's part buffer: the bytes land where
/// they are sent from, with no copy in user space). Ownership: the buffer lives in the op data
/// until the completion and comes back with the result.
pub struct RecvAppend<B: AppendBuf> {
    fd: SharedFd,
    buf: B,
    room: usize,
}

// SAFETY: the kernel writes into the room the buffer itself described (its `AppendBuf` contract:
// stable, exclusively ours until `appended`), and `complete` reports only a non-negative count
// clamped to that room. The socket's SharedFd is held until completion.
unsafe impl<B: AppendBuf> OpData for RecvAppend<B> {
    type Output = (std::io::Result<usize>, B);
    fn sqe(&mut self) -> squeue::Entry {
        let (ptr, room) = self.buf.room();
        self.room = room;
        let room = room.min(u32::MAX as usize) as u32;
        opcode::Recv::new(fd::target(&self.fd), ptr, room).build()
    }
    fn complete(mut self, cqe: Cqe) -> Self::Output {
        let res = cqe.result().map(|n| (n as usize).min(self.room));
        if let Ok(n) = res {
            self.buf.appended(n);
        }
        (res, self.buf)
    }
}

/// Receives into `buf`'s room; `Ok(0)` is end of stream (or no room).
pub fn recv_append<B: AppendBuf>(fd: &SharedFd, buf: B) -> Op<RecvAppend<B>> {
    Op::new(RecvAppend {
        fd: fd.clone(),
        buf,
        room: 0,
    })
}
