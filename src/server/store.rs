//! Receiving an upload's bytes from the data connection into the file: two implementations behind
//! one function, chosen by configuration.
//!
//! - `Fixed`: a multishot recv fills registered pool buffers; each filled buffer is written with
//!   WRITE_FIXED at its explicit file offset while the next ones arrive, so several writes are in
//!   flight and they may complete in any order.
//! - `Splice`: socket -> pipe -> file with splice; no user-space copy, but each splice runs in an io-wq
//!   worker, and the two halves alternate.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::engine::bufpool::PoolBuf;
use crate::engine::fd::SharedFd;
use crate::engine::op::{self, recv_multi::Received, write::WriteFixed, Op};
use crate::engine::{runtime, time};

use super::config::DataPathKind;

/// Why receiving stopped early.
#[derive(Debug)]
pub enum StoreError {
    /// The data connection failed or stalled: the client's side of the problem.
    Net(io::Error),
    /// Writing the file failed: our side (disk full, I/O error).
    File(io::Error),
}

/// Receives until the peer closes the data connection, writing from `offset` on; returns the bytes
/// stored. A data connection with no progress for `stall` fails with a timeout.
pub async fn receive(
    kind: DataPathKind,
    data: &SharedFd,
    file: &SharedFd,
    offset: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let has_pool = runtime::with(|rt| rt.bufpool().is_some());
    match kind {
        DataPathKind::Fixed if has_pool => receive_fixed(data, file, offset, stall).await,
        DataPathKind::Fixed => receive_copy(data, file, offset, stall).await,
        DataPathKind::Splice => receive_splice(data, file, offset, stall).await,
    }
}

struct PendingWrite {
    op: Op<WriteFixed>,
    offset: u64,
    start: usize,
}

enum Event {
    Wrote(usize, io::Result<usize>, PoolBuf),
    Recv(Option<io::Result<Received>>),
    Tick,
}

async fn receive_fixed(data: &SharedFd, file: &SharedFd, start: u64, stall: Duration) -> Result<u64, StoreError> {
    let Some(rt) = runtime::current() else { return Err(StoreError::Net(io::Error::other("no runtime"))) };
    let Some(pool) = rt.bufpool() else { return Err(StoreError::Net(io::Error::other("no buffer pool"))) };
    let mut offset = start;
    let mut writes: Vec<PendingWrite> = Vec::new();
    let mut recv = Some(op::recv_multi::recv_multi(data));
    let mut eof = false;
    let mut progress = false;
    // One stall timer per transfer, re-armed each period, instead of a timeout per recv.
    let mut tick = op::timeout::timeout(stall);
    loop {
        if eof && writes.is_empty() {
            return Ok(offset - start);
        }
        let ev = poll_fn(|cx| {
            for (i, w) in writes.iter_mut().enumerate() {
                if let Poll::Ready((res, buf)) = Pin::new(&mut w.op).poll(cx) {
                    return Poll::Ready(Event::Wrote(i, res, buf));
                }
            }
            if let Some(r) = recv.as_mut() {
                if let Poll::Ready(item) = r.poll_next(cx) {
                    return Poll::Ready(Event::Recv(item));
                }
            }
            if Pin::new(&mut tick).poll(cx).is_ready() {
                return Poll::Ready(Event::Tick);
            }
            Poll::Pending
        })
        .await;
        match ev {
            Event::Wrote(i, res, buf) => {
                let w = writes.swap_remove(i);
                let n = res.map_err(StoreError::File)?;
                if n == 0 {
                    return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
                }
                let done = w.start + n;
                if done < buf.len() {
                    // Short write: continue from where it stopped, same buffer.
                    let off = w.offset + n as u64;
                    writes.push(PendingWrite { op: op::write::write_fixed(file, buf, done, off), offset: off, start: done });
                }
            }
            Event::Recv(Some(Ok(Received::Data(buf)))) => {
                progress = true;
                let n = buf.len() as u64;
                writes.push(PendingWrite { op: op::write::write_fixed(file, buf, 0, offset), offset, start: 0 });
                offset += n;
            }
            Event::Recv(Some(Ok(Received::Eof))) => {
                eof = true;
                recv = None;
            }
            Event::Recv(Some(Err(e))) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                // The pool ran dry: wait for buffers (ours come back as writes complete), then re-arm.
                recv = None;
                if writes.is_empty() {
                    pool.wait_available(1).await;
                }
            }
            Event::Recv(Some(Err(e))) => return Err(StoreError::Net(e)),
            Event::Recv(None) => recv = None,
            Event::Tick => {
                if !progress && writes.is_empty() {
                    return Err(StoreError::Net(io::Error::new(io::ErrorKind::TimedOut, "data connection stalled")));
                }
                progress = false;
                tick = op::timeout::timeout(stall);
            }
        }
        if recv.is_none() && !eof && pool.available() > 0 {
            recv = Some(op::recv_multi::recv_multi(data));
        }
    }
}

/// Fallback without a registered pool: recv into a Vec, write it at the offset.
async fn receive_copy(data: &SharedFd, file: &SharedFd, start: u64, stall: Duration) -> Result<u64, StoreError> {
    let mut offset = start;
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        buf.clear();
        let (res, b) = match time::timeout(stall, op::recv::recv(data, buf)).await {
            Ok(r) => r,
            Err(_) => return Err(StoreError::Net(io::Error::new(io::ErrorKind::TimedOut, "data connection stalled"))),
        };
        buf = b;
        let n = res.map_err(StoreError::Net)?;
        if n == 0 {
            return Ok(offset - start);
        }
        let mut written = 0;
        while written < n {
            let (res, b) = op::write::write(file, buf, written, offset).await;
            buf = b;
            let w = res.map_err(StoreError::File)?;
            if w == 0 {
                return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
            }
            written += w;
            offset += w as u64;
        }
    }
}

async fn receive_splice(data: &SharedFd, file: &SharedFd, start: u64, stall: Duration) -> Result<u64, StoreError> {
    let Some(rt) = runtime::current() else { return Err(StoreError::Net(io::Error::other("no runtime"))) };
    let pipe = rt.pipes().get().map_err(StoreError::File)?;
    let chunk = pipe.capacity.min(u32::MAX as usize) as u32;
    let mut offset = start;
    loop {
        let n = match time::timeout(stall, op::splice::splice(data, -1, &pipe.write, -1, chunk)).await {
            Ok(r) => r.map_err(StoreError::Net)?,
            Err(_) => return Err(StoreError::Net(io::Error::new(io::ErrorKind::TimedOut, "data connection stalled"))),
        };
        if n == 0 {
            rt.pipes().put_empty(pipe);
            return Ok(offset - start);
        }
        let mut left = n;
        while left > 0 {
            // A failure here leaves bytes in the pipe: the pipe is dropped with `pipe`, never reused.
            let m = op::splice::splice(&pipe.read, -1, file, offset as i64, left as u32).await.map_err(StoreError::File)?;
            if m == 0 {
                return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            offset += m as u64;
        }
    }
}
