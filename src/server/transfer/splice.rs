//! The splice receive path: socket -> pipe -> file, no user-space copy; the socket's pages enter the
//! pipe by reference, so the page-cache write is the payload's only copy. With inline file-system
//! calls both halves are direct system calls (a ring poll waits for data); through the ring each
//! splice runs in an io-wq worker.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::engine::direct;
use crate::engine::fd::SharedFd;
use crate::engine::pipe::Pipe;
use crate::engine::{net, op, runtime, time};
use crate::server::storage::FileSink;

use super::direct::ALIGN;
use super::failure::{stalled, StoreError};

/// How a splice receive ended.
pub enum SpliceEnd {
    /// The peer closed; the file ends at this offset.
    Eof(u64),
    /// The upload passed its direct-I/O threshold: continue with direct writes from this offset
    /// (aligned for them). Nothing of the stream beyond it has been taken from the socket.
    Switch(u64),
}

/// Splices the upload into its file from `start`; with inline calls, hands over to direct I/O at
/// the first aligned offset past `start + sink.direct_after`.
pub async fn receive_splice(
    data: &SharedFd,
    sink: FileSink<'_>,
    start: u64,
    stall: Duration,
) -> Result<SpliceEnd, StoreError> {
    let file = sink.file;
    let Some(rt) = runtime::current() else {
        return Err(StoreError::Net(io::Error::other("no runtime")));
    };
    let pipe = rt.pipes().get().map_err(StoreError::File)?;
    let switch_at = sink.direct_after.map(|t| start.saturating_add(t));
    let res = if sink.inline {
        splice_inline(data, file, start, stall, &pipe, switch_at).await
    } else {
        splice_ring(data, file, start, stall, &pipe)
            .await
            .map(SpliceEnd::Eof)
    };
    // Only a pipe known to be empty is reused; after a failure it may hold bytes.
    if res.is_ok() {
        rt.pipes().put_empty(pipe);
    }
    res
}

/// Bytes an inline splice moves before it waits for the ring again, even when more data is already
/// queued: a fast sender must not keep the core from its other sessions, nor from this session's
/// control connection (ABOR, STAT).
const SPLICE_TURN_BYTES: usize = 1 << 20;

/// Both halves as direct system calls on the core: socket -> pipe without blocking (a ring poll
/// waits for data when there is none, and after every `SPLICE_TURN_BYTES`), then pipe -> file at the
/// upload's offset. The socket's pages are moved into the pipe by reference, so the page-cache write
/// is the only copy of the payload.
async fn splice_inline(
    data: &SharedFd,
    file: &SharedFd,
    start: u64,
    stall: Duration,
    pipe: &Pipe,
    switch_at: Option<u64>,
) -> Result<SpliceEnd, StoreError> {
    // A TCP socket's splice waits for the whole length unless the socket itself is non-blocking
    // (SPLICE_F_NONBLOCK only covers the pipe side): without this, a client that pauses mid-upload
    // would block the core.
    net::set_nonblocking(data.as_raw_fd()).map_err(StoreError::Net)?;
    let mut offset = start;
    let mut since_turn = 0usize;
    loop {
        if since_turn >= SPLICE_TURN_BYTES {
            wait_readable(data, stall).await?;
            since_turn = 0;
        }
        // Take no more than up to the direct-I/O threshold (rounded up to the alignment, or the
        // next aligned offset once past it), then hand over there.
        let mut want = pipe.capacity;
        if let Some(at) = switch_at {
            let target = at.max(offset).next_multiple_of(ALIGN);
            if offset == target {
                return Ok(SpliceEnd::Switch(offset));
            }
            want = want.min((target - offset) as usize);
        }
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        let n = match direct::splice(data, &pipe.write, None, want, flags) {
            Ok(0) => return Ok(SpliceEnd::Eof(offset)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(data, stall).await?;
                since_turn = 0;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::Net(e)),
        };
        since_turn += n;
        let mut left = n;
        while left > 0 {
            let m = match direct::splice(&pipe.read, file, Some(offset), left, libc::SPLICE_F_MOVE)
            {
                Ok(0) => return Err(StoreError::File(io::ErrorKind::WriteZero.into())),
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::File(e)),
            };
            left -= m;
            offset += m as u64;
        }
    }
}

/// Waits through the ring until `data` is readable (or closed), bounded by the stall timeout.
async fn wait_readable(data: &SharedFd, stall: Duration) -> Result<(), StoreError> {
    let ready = (libc::POLLIN | libc::POLLRDHUP) as u32;
    match time::timeout(stall, op::poll::poll(data, ready)).await {
        Ok(r) => r.map(drop).map_err(StoreError::Net),
        Err(_) => Err(stalled()),
    }
}

/// Both halves through the ring (each splice runs in an io-wq worker): the core never blocks on
/// the file system.
async fn splice_ring(
    data: &SharedFd,
    file: &SharedFd,
    start: u64,
    stall: Duration,
    pipe: &Pipe,
) -> Result<u64, StoreError> {
    let chunk = pipe.capacity.min(u32::MAX as usize) as u32;
    let mut offset = start;
    loop {
        let n = match time::timeout(stall, op::splice::splice(data, -1, &pipe.write, -1, chunk))
            .await
        {
            Ok(r) => r.map_err(StoreError::Net)?,
            Err(_) => return Err(stalled()),
        };
        if n == 0 {
            return Ok(offset);
        }
        let mut left = n;
        while left > 0 {
            let m = op::splice::splice(&pipe.read, -1, file, offset as i64, left as u32)
                .await
                .map_err(StoreError::File)?;
            if m == 0 {
                return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            offset += m as u64;
        }
    }
}
