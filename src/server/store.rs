//! Receiving an upload's bytes from the data connection into the file: two implementations behind
//! one function, chosen by configuration.
//!
//! - `Fixed`: a multishot recv fills registered pool buffers; each filled buffer is written with
//!   WRITE_FIXED at its explicit file offset while the next ones arrive, so several writes are in
//!   flight and they may complete in any order.
//! - `Splice`: socket -> pipe -> file with splice; no user-space copy, and the socket's pages enter
//!   the pipe by reference, so the page-cache write is the payload's only copy. With inline
//!   file-system calls both halves are direct system calls (a ring poll waits for data); with
//!   `fs_ops = ring` each splice runs in an io-wq worker.

use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::engine::bufpool::PoolBuf;
use crate::engine::direct;
use crate::engine::fd::SharedFd;
use crate::engine::op::recv_multi::{Received, RecvMulti};
use crate::engine::op::{self, write::WriteFixed, MultiOp, Op};
use crate::engine::pipe::Pipe;
use crate::engine::timer::Sleep;
use crate::engine::{net, runtime, time};
use crate::proto::ascii::CrlfToLf;
use crate::proto::modeb::{Decoder, Event};

use super::config::{inline_fs, DataPathKind};

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
/// TYPE A (`ascii`) uploads are converted from CRLF to LF, which needs the bytes in user space, so they
/// always take the copying path.
pub async fn receive(
    kind: DataPathKind,
    ascii: bool,
    data: &SharedFd,
    file: &SharedFd,
    offset: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let has_pool = runtime::with(|rt| rt.bufpool().is_some());
    let splice = match kind {
        DataPathKind::Auto => inline_fs(),
        DataPathKind::Fixed => false,
        DataPathKind::Splice => true,
    };
    match () {
        _ if ascii => receive_copy(data, file, offset, stall, Some(CrlfToLf::default())).await,
        _ if splice => receive_splice(data, file, offset, stall).await,
        _ if has_pool => receive_fixed(data, file, offset, stall).await,
        _ => receive_copy(data, file, offset, stall, None).await,
    }
}

/// The writes in flight for one upload. Short writes are resubmitted from the same buffer.
struct WriteSet {
    file: SharedFd,
    ops: Vec<(Op<WriteFixed>, Range<usize>, u64)>,
}

impl WriteSet {
    fn new(file: &SharedFd) -> WriteSet {
        WriteSet {
            file: file.clone(),
            ops: Vec::new(),
        }
    }

    fn push(
        &mut self,
        buf: Rc<PoolBuf>,
        range: Range<usize>,
        offset: u64,
    ) -> Result<(), StoreError> {
        if range.is_empty() {
            return Ok(());
        }
        if inline_fs() {
            // Written at once from the received buffer, which then goes straight back to the ring.
            let part = buf.as_slice().get(range).unwrap_or(&[]);
            return direct::pwrite_all(&self.file, part, offset).map_err(StoreError::File);
        }
        let op = op::write::write_fixed(&self.file, buf, range.clone(), offset);
        self.ops.push((op, range, offset));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ready when at least one write completed (resubmitting the rest of a short one).
    fn poll_completions(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
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
                if let Err(e) = self.push(buf, range.start + n..range.end, offset + n as u64) {
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
enum Wake {
    Wrote,
    Recv(Option<io::Result<Received>>),
    Tick,
}

/// A multishot recv on a data connection with its stall timer; survives between MODE B files.
pub struct Receiver {
    data: SharedFd,
    recv: Option<MultiOp<RecvMulti>>,
    tick: Sleep,
    stall: Duration,
    progress: bool,
    /// The peer closed its side.
    pub closed: bool,
}

impl Receiver {
    pub fn new(data: &SharedFd, stall: Duration) -> Receiver {
        Receiver {
            data: data.clone(),
            recv: None,
            tick: Sleep::new(stall),
            stall,
            progress: false,
            closed: false,
        }
    }

    /// Waits for a write completion (if `writes` has any), a received buffer, or the stall timer.
    /// Stops receiving while `take_data` is false (only writes are awaited).
    async fn event(&mut self, writes: &mut WriteSet, take_data: bool) -> Result<Wake, StoreError> {
        if take_data && self.recv.is_none() && !self.closed {
            if let Some(rt) = runtime::current() {
                if let Some(pool) = rt.bufpool() {
                    if pool.available() == 0 && writes.is_empty() {
                        // Every buffer of this core is held elsewhere; give up after the stall
                        // timeout rather than wait forever for the pool to refill.
                        if time::timeout(self.stall, pool.wait_available(1))
                            .await
                            .is_err()
                        {
                            return Err(StoreError::Net(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no receive buffer became free",
                            )));
                        }
                    }
                    if pool.available() > 0 {
                        self.recv = Some(op::recv_multi::recv_multi(&self.data));
                    }
                }
            }
        }
        poll_fn(|cx| {
            if let Poll::Ready(r) = writes.poll_completions(cx) {
                return Poll::Ready(r.map(|()| Wake::Wrote));
            }
            if take_data {
                if let Some(r) = self.recv.as_mut() {
                    if let Poll::Ready(item) = r.poll_next(cx) {
                        return Poll::Ready(Ok(Wake::Recv(item)));
                    }
                }
            }
            if Pin::new(&mut self.tick).poll(cx).is_ready() {
                return Poll::Ready(Ok(Wake::Tick));
            }
            Poll::Pending
        })
        .await
    }

    /// Handles the stall timer: fails when nothing arrived for a whole period while data was awaited.
    fn on_tick(&mut self, waiting_for_data: bool) -> Result<(), StoreError> {
        if waiting_for_data && !self.progress {
            return Err(stalled());
        }
        self.progress = false;
        self.tick = Sleep::new(self.stall);
        Ok(())
    }

    /// Turns a recv completion into a buffer, `None` for "nothing to do" (re-arm later), or an error.
    fn on_recv(
        &mut self,
        item: Option<io::Result<Received>>,
    ) -> Result<Option<PoolBuf>, StoreError> {
        match item {
            Some(Ok(Received::Data(buf))) => {
                self.progress = true;
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
            Some(Err(e)) => Err(StoreError::Net(e)),
            None => {
                self.recv = None;
                Ok(None)
            }
        }
    }
}

async fn receive_fixed(
    data: &SharedFd,
    file: &SharedFd,
    start: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let mut rx = Receiver::new(data, stall);
    let mut writes = WriteSet::new(file);
    let mut offset = start;
    loop {
        if rx.closed && writes.is_empty() {
            return Ok(offset - start);
        }
        match rx.event(&mut writes, !rx.closed).await? {
            Wake::Wrote => {}
            Wake::Recv(item) => {
                if let Some(buf) = rx.on_recv(item)? {
                    let n = buf.len();
                    writes.push(Rc::new(buf), 0..n, offset)?;
                    offset += n as u64;
                }
            }
            Wake::Tick => rx.on_tick(!rx.closed)?,
        }
    }
}

/// MODE B state of a data connection kept open across files: the receiver, the decoder, and the
/// part of a received buffer that follows the last file's EOF block (the next file's first bytes).
pub struct BlockReceiver {
    rx: Receiver,
    decoder: Decoder,
    leftover: Option<(Rc<PoolBuf>, usize)>,
    /// Restart markers of the file being received (with their offsets), kept for a failed transfer.
    markers: Vec<(Vec<u8>, u64)>,
}

/// One MODE B file received.
pub struct BlockFile {
    pub bytes: u64,
    /// Restart markers seen, with the file offset each one stands for.
    pub markers: Vec<(Vec<u8>, u64)>,
}

impl BlockReceiver {
    pub fn new(data: &SharedFd, stall: Duration) -> BlockReceiver {
        BlockReceiver {
            rx: Receiver::new(data, stall),
            decoder: Decoder::new(),
            leftover: None,
            markers: Vec::new(),
        }
    }

    /// The restart markers received before the last `receive` failed.
    pub fn markers_of_failed(&self) -> &[(Vec<u8>, u64)] {
        &self.markers
    }

    /// Receives one file (up to and including its EOF block), writing payload runs in place from the
    /// received registered buffers at their file offsets. Headers split across buffers are handled by
    /// the decoder; bytes after the EOF block stay for the next file.
    pub async fn receive(&mut self, file: &SharedFd, start: u64) -> Result<BlockFile, StoreError> {
        let mut writes = WriteSet::new(file);
        let mut offset = start;
        self.markers.clear();
        let mut done = false;
        loop {
            if let Some((buf, mut pos)) = self.leftover.take() {
                let base = buf.as_slice().as_ptr() as usize;
                while let Some(ev) = self
                    .decoder
                    .next(buf.as_slice(), &mut pos)
                    .map_err(bad_stream)?
                {
                    match ev {
                        Event::Data(run) => {
                            let at = run.as_ptr() as usize - base;
                            writes.push(buf.clone(), at..at + run.len(), offset)?;
                            offset += run.len() as u64;
                        }
                        Event::Restart(m) => self.markers.push((m, offset)),
                        Event::EndOfRecord => {}
                        Event::EndOfFile => {
                            done = true;
                            break;
                        }
                    }
                }
                if pos < buf.len() {
                    self.leftover = Some((buf, pos));
                }
            }
            if done && writes.is_empty() {
                return Ok(BlockFile {
                    bytes: offset - start,
                    markers: std::mem::take(&mut self.markers),
                });
            }
            if !done && self.rx.closed {
                // The peer closed without an EOF block: the file is incomplete.
                return Err(StoreError::Net(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before EOF block",
                )));
            }
            match self.rx.event(&mut writes, !done).await? {
                Wake::Wrote => {}
                Wake::Recv(item) => {
                    if let Some(buf) = self.rx.on_recv(item)? {
                        self.leftover = Some((Rc::new(buf), 0));
                    }
                }
                Wake::Tick => self.rx.on_tick(!done)?,
            }
        }
    }
}

fn bad_stream(e: crate::proto::modeb::DecodeError) -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad MODE B stream: {e}"),
    ))
}

/// Without a registered pool, or for TYPE A: recv into a Vec, (convert,) write it at the offset.
async fn receive_copy(
    data: &SharedFd,
    file: &SharedFd,
    start: u64,
    stall: Duration,
    mut ascii: Option<CrlfToLf>,
) -> Result<u64, StoreError> {
    let mut offset = start;
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut converted = Vec::new();
    loop {
        buf.clear();
        let (res, b) = match time::timeout(stall, op::recv::recv(data, buf)).await {
            Ok(r) => r,
            Err(_) => return Err(stalled()),
        };
        buf = b;
        let n = res.map_err(StoreError::Net)?;
        let out = match ascii.as_mut() {
            Some(conv) => {
                converted.clear();
                if n == 0 {
                    conv.finish(&mut converted);
                } else {
                    conv.convert(&buf, &mut converted);
                }
                std::mem::take(&mut converted)
            }
            None => std::mem::take(&mut buf),
        };
        let len = out.len();
        let mut written = 0;
        let mut out = out;
        while written < len {
            let (res, o) = op::write::write(file, out, written, offset).await;
            out = o;
            let w = res.map_err(StoreError::File)?;
            if w == 0 {
                return Err(StoreError::File(io::ErrorKind::WriteZero.into()));
            }
            written += w;
            offset += w as u64;
        }
        out.clear();
        if ascii.is_some() {
            converted = out;
        } else {
            buf = out;
        }
        if n == 0 {
            return Ok(offset - start);
        }
    }
}

async fn receive_splice(
    data: &SharedFd,
    file: &SharedFd,
    start: u64,
    stall: Duration,
) -> Result<u64, StoreError> {
    let Some(rt) = runtime::current() else {
        return Err(StoreError::Net(io::Error::other("no runtime")));
    };
    let pipe = rt.pipes().get().map_err(StoreError::File)?;
    let res = if inline_fs() {
        splice_inline(data, file, start, stall, &pipe).await
    } else {
        splice_ring(data, file, start, stall, &pipe).await
    };
    // Only a pipe known to be empty is reused; after a failure it may hold bytes.
    if res.is_ok() {
        rt.pipes().put_empty(pipe);
    }
    res
}

/// No data arrived on the data connection for a whole stall period.
fn stalled() -> StoreError {
    StoreError::Net(io::Error::new(
        io::ErrorKind::TimedOut,
        "data connection stalled",
    ))
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
) -> Result<u64, StoreError> {
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
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        let n = match direct::splice(data, &pipe.write, None, pipe.capacity, flags) {
            Ok(0) => return Ok(offset - start),
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
            return Ok(offset - start);
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
