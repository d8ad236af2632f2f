//! The registered-buffer receive path: a multishot recv fills registered pool buffers, and each
//! filled buffer is written at its explicit file offset while the next ones arrive (WRITE_FIXED
//! ops in flight, or a direct write with inline file-system calls), so writes may complete in any
//! order. The receiver and write set are shared with MODE B (`block`), which decodes in place from
//! the same buffers.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::engine::bufpool::PoolBuf;
use crate::engine::direct;
use crate::engine::fd::SharedFd;
use crate::engine::op::recv_multi::{Received, RecvMulti};
use crate::engine::op::{self, write::WriteFixed, MultiOp, Op};
use crate::engine::timer::Sleep;
use crate::engine::{runtime, time};
use crate::proto::checksum::InOrder;
use crate::server::storage::FileSink;

use super::direct::ALIGN;
use super::failure::{stalled, StoreError};

/// The writes in flight for one upload. Short writes are resubmitted from the same buffer.
pub struct WriteSet<'a> {
    file: SharedFd,
    /// The upload's inline checksums, fed each piece once as it is first written.
    digest: Option<&'a RefCell<InOrder>>,
    /// Write at once with a direct call (the buffer goes straight back to the ring) rather than
    /// through a WRITE_FIXED op: the storage's choice of `fs_ops`, carried by its sink.
    inline: bool,
    ops: Vec<(Op<WriteFixed>, Range<usize>, u64)>,
}

impl<'a> WriteSet<'a> {
    pub fn new(sink: FileSink<'a>) -> WriteSet<'a> {
        WriteSet {
            file: sink.file.clone(),
            digest: sink.digest,
            inline: sink.inline,
            ops: Vec::new(),
        }
    }

    /// Writes `buf[range]` at `offset` (the next piece of the file).
    pub fn push(
        &mut self,
        buf: Rc<PoolBuf>,
        range: Range<usize>,
        offset: u64,
    ) -> Result<(), StoreError> {
        if let Some(d) = self.digest {
            let part = buf.as_slice().get(range.clone()).unwrap_or(&[]);
            d.borrow_mut().feed(offset, part);
        }
        self.submit(buf, range, offset)
    }

    /// Writes `buf[range]` at `offset`: a new piece, or the rest of a short write.
    fn submit(
        &mut self,
        buf: Rc<PoolBuf>,
        range: Range<usize>,
        offset: u64,
    ) -> Result<(), StoreError> {
        if range.is_empty() {
            return Ok(());
        }
        if self.inline {
            // Written at once from the received buffer, which then goes straight back to the ring.
            let part = buf.as_slice().get(range).unwrap_or(&[]);
            return direct::pwrite_all(&self.file, part, offset).map_err(StoreError::File);
        }
        let op = op::write::write_fixed(&self.file, buf, range.clone(), offset);
        self.ops.push((op, range, offset));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ready when at least one write completed (resubmitting the rest of a short one).
    pub fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        let mut any = false;
        let mut i = 0;
        while i < self.ops.len() {
            let Some((op, range, offset)) = self.ops.get_mut(i) else {
                break;
            };
            let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) else {
                i += 1;
                continue;
            };
            let (range, offset) = (range.clone(), *offset);
            self.ops.swap_remove(i);
            any = true;
            let n = res.map_err(StoreError::File)?;
            if n == 0 {
                return Poll::Ready(Err(StoreError::File(io::ErrorKind::WriteZero.into())));
            }
            if range.start + n < range.end {
                if let Err(e) = self.submit(buf, range.start + n..range.end, offset + n as u64) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        if any {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// What woke a receiving upload.
pub enum Wake {
    Wrote,
    Recv(Option<io::Result<Received>>),
    Tick,
}

/// A multishot recv on a data connection with its stall timer; survives between MODE B files.
///
/// The stall rule: a receive that has waited for data `stall` since its last progress fails, at that
/// moment (the timer is armed for exactly that deadline, not in periods, so the cut comes within
/// `stall` plus the timer's resolution, never up to twice it).
pub struct Receiver {
    data: SharedFd,
    recv: Option<MultiOp<RecvMulti>>,
    /// [`Receiver::pause`] stopped `recv`; its final `ECANCELED` means "re-arm", not an error.
    paused: bool,
    /// The next recv armed is a single one ([`Receiver::arm_once_next`]).
    once_next: bool,
    tick: Sleep,
    stall: Duration,
    /// When data last arrived (or waiting for data began).
    last: Instant,
    /// The peer closed its side.
    pub closed: bool,
}

impl Receiver {
    pub fn new(data: &SharedFd, stall: Duration) -> Receiver {
        Receiver {
            data: data.clone(),
            recv: None,
            paused: false,
            once_next: false,
            tick: Sleep::new(stall),
            stall,
            last: Instant::now(),
            closed: false,
        }
    }

    /// Stops taking data from the connection (between MODE B files): the multishot recv is
    /// cancelled, so a client that keeps sending on its kept connection fills only its own socket
    /// buffer (TCP flow control stops it) instead of this core's registered buffers. Whatever was
    /// already received stays queued for the next file.
    pub fn pause(&mut self) {
        if let Some(r) = self.recv.as_mut() {
            r.stop();
            self.paused = true;
        }
    }

    /// Makes the next recv armed a single recv rather than a multishot: a MODE B file's first read,
    /// which for a small file brings the whole file, so nothing is left running to cancel when it
    /// ends (a multishot costs a cancel and its completion per file). A larger file arms a
    /// multishot for the rest.
    pub fn arm_once_next(&mut self) {
        self.once_next = true;
    }

    /// Whether a recv is armed (a paused one until its cancellation has come back).
    pub fn is_receiving(&self) -> bool {
        self.recv.is_some()
    }

    /// Starts the stall clock again (a new file begins: the time between files is not a stall).
    pub fn restart_clock(&mut self) {
        self.last = Instant::now();
        self.tick = Sleep::until(self.last + self.stall);
    }

    /// Waits for a write completion (if `writes` has any), a received buffer, or the stall timer.
    /// Stops receiving while `take_data` is false (only writes are awaited).
    pub async fn event(
        &mut self,
        writes: &mut WriteSet<'_>,
        take_data: bool,
    ) -> Result<Wake, StoreError> {
        if take_data && !self.try_arm() && !self.closed && writes.is_empty() {
            // Every buffer of this core is held elsewhere; give up after the stall timeout rather
            // than wait forever for the pool to refill.
            wait_for_buffer(self.stall).await?;
            self.try_arm();
        }
        poll_fn(|cx| {
            if let Poll::Ready(r) = writes.poll_completions(cx) {
                return Poll::Ready(r.map(|()| Wake::Wrote));
            }
            if take_data {
                if let Poll::Ready(item) = self.poll_recv(cx) {
                    return Poll::Ready(Ok(Wake::Recv(item)));
                }
            }
            if Pin::new(&mut self.tick).poll(cx).is_ready() {
                return Poll::Ready(Ok(Wake::Tick));
            }
            Poll::Pending
        })
        .await
    }

    /// Starts a multishot recv if none runs, the peer has not closed and the core's pool has a
    /// free buffer; returns whether one runs. For callers that poll several receivers at once.
    pub fn try_arm(&mut self) -> bool {
        if self.recv.is_none() && !self.closed {
            let free = runtime::current()
                .and_then(|rt| rt.bufpool().map(|p| p.available() > 0))
                .unwrap_or(false);
            if free {
                self.recv = Some(if std::mem::take(&mut self.once_next) {
                    op::recv_multi::recv_once(&self.data)
                } else {
                    op::recv_multi::recv_multi(&self.data)
                });
                self.paused = false;
            }
        }
        self.recv.is_some()
    }

    /// A completion of the running recv, if any; pass it to [`Receiver::on_recv`].
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Received>>> {
        match self.recv.as_mut() {
            Some(r) => r.poll_next(cx),
            None => Poll::Pending,
        }
    }
}

/// Waits up to `stall` for a buffer of the core's pool to come back. A core without a pool can
/// never receive this way: an error at once, not a loop that waits for nothing.
pub async fn wait_for_buffer(stall: Duration) -> Result<(), StoreError> {
    let none = || {
        StoreError::Net(io::Error::new(
            io::ErrorKind::Unsupported,
            "no registered receive buffers on this core",
        ))
    };
    let rt = runtime::current().ok_or_else(none)?;
    let pool = rt.bufpool().ok_or_else(none)?;
    if pool.available() > 0 {
        return Ok(());
    }
    time::timeout(stall, pool.wait_available(1))
        .await
        .map_err(|_| {
            StoreError::Net(io::Error::new(
                io::ErrorKind::TimedOut,
                "no receive buffer became free",
            ))
        })
}

impl Receiver {
    /// Handles the stall timer: fails when data was awaited for `stall` since the last progress;
    /// otherwise re-arms it for the exact deadline. Time spent only waiting for writes does not count.
    pub fn on_tick(&mut self, waiting_for_data: bool) -> Result<(), StoreError> {
        let now = Instant::now();
        if !waiting_for_data {
            self.last = now;
        }
        let due = self.last + self.stall;
        if now >= due {
            return Err(stalled());
        }
        self.tick = Sleep::until(due);
        Ok(())
    }

    /// Turns a recv completion into a buffer, `None` for "nothing to do" (re-arm later), or an error.
    pub fn on_recv(
        &mut self,
        item: Option<io::Result<Received>>,
    ) -> Result<Option<PoolBuf>, StoreError> {
        match item {
            Some(Ok(Received::Data(buf))) => {
                self.last = Instant::now();
                if self.recv.as_ref().is_some_and(|r| r.is_finished()) {
                    // A single recv, now over: the next `event` arms another.
                    self.recv = None;
                }
                Ok(Some(buf))
            }
            Some(Ok(Received::Eof)) => {
                self.closed = true;
                self.recv = None;
                Ok(None)
            }
            // The pool ran dry: the next `event` re-arms once buffers are back.
            Some(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.recv = None;
                Ok(None)
            }
            // The end of a recv we paused: the next `event` starts a new one.
            Some(Err(e)) if self.paused && e.raw_os_error() == Some(libc::ECANCELED) => {
                self.recv = None;
                self.paused = false;
                Ok(None)
            }
            Some(Err(e)) => Err(StoreError::Net(e)),
            None => {
                self.recv = None;
                self.paused = false;
                Ok(None)
            }
        }
    }
}

/// How a fixed receive with a direct-I/O threshold ended.
pub enum FixedEnd {
    /// The peer closed; the file ends at this offset.
    Eof(u64),
    /// The upload passed its threshold: continue with direct writes from this offset (aligned for
    /// them). Nothing of the stream beyond it has been taken from the socket.
    Switch(u64),
}

/// [`receive_fixed`] that hands over to direct I/O once the upload passes `switch_at`, as the
/// splice path does: for uploads with inline checksums, which leave splice but should not fill
/// the page cache with a large file any more than it would. At the threshold the multishot recv
/// is stopped and the buffers it had already filled are written buffered (on a fast link that can
/// be several MiB past the threshold: the pool's worth at most), then the few bytes up to the next
/// aligned offset are received and written on their own.
pub async fn receive_fixed_until(
    data: &SharedFd,
    sink: FileSink<'_>,
    start: u64,
    stall: Duration,
    switch_at: u64,
) -> Result<FixedEnd, StoreError> {
    let mut rx = Receiver::new(data, stall);
    let mut writes = WriteSet::new(sink);
    let mut offset = start;
    let mut switching = false;
    loop {
        if rx.closed && writes.is_empty() {
            return Ok(FixedEnd::Eof(offset));
        }
        if switching && !rx.is_receiving() && writes.is_empty() {
            break;
        }
        if !switching && offset >= switch_at {
            rx.pause();
            switching = true;
            continue;
        }
        // While switching, only what the stopped recv had already taken is consumed.
        let take = !rx.closed && (!switching || rx.is_receiving());
        match rx.event(&mut writes, take).await? {
            Wake::Wrote => {}
            Wake::Recv(item) => {
                if let Some(buf) = rx.on_recv(item)? {
                    let n = buf.len();
                    writes.push(Rc::new(buf), 0..n, offset)?;
                    offset += n as u64;
                }
            }
            Wake::Tick => rx.on_tick(take)?,
        }
    }
    let short = offset % ALIGN;
    if short == 0 {
        return Ok(FixedEnd::Switch(offset));
    }
    // `with_capacity` gives exactly this capacity, so the recvs below take no byte past it.
    let want = (ALIGN - short) as usize;
    let mut buf = Vec::with_capacity(want);
    while buf.len() < want {
        let before = buf.len();
        let (res, b) = match time::timeout(stall, op::recv::recv(data, buf)).await {
            Ok(r) => r,
            Err(_) => return Err(stalled()),
        };
        buf = b;
        match res {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StoreError::Net(e)),
        }
        if buf.len() == before {
            break;
        }
    }
    let got = buf.len();
    sink.observe(offset, &buf);
    let (res, _) = super::receive::write_all_at(sink.file, buf, offset).await;
    res?;
    offset += got as u64;
    if got < want {
        return Ok(FixedEnd::Eof(offset));
    }
    Ok(FixedEnd::Switch(offset))
}

/// Receives the whole stream into the registered buffers, written as they fill; the length.
pub async fn receive_fixed(
    data: &SharedFd,
    sink: FileSink<'_>,
    start: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    // Without a threshold the receive ends only at the peer's close.
    match receive_fixed_until(data, sink, start, stall, u64::MAX).await? {
        FixedEnd::Eof(end) | FixedEnd::Switch(end) => Ok(end - start),
    }
}
