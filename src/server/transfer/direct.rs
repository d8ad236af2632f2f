//! The direct-I/O receive path: large uploads land with O_DIRECT writes straight from registered
//! buffers, so they neither copy into the page cache nor fill it. An ingest server writes data once
//! and something else reads it later; keeping every byte in its own page cache costs a copy per
//! byte and, on a VM that hands freed memory back to its host, fresh pages that are expensive to
//! touch.
//!
//! O_DIRECT needs the memory, the length and the file offset aligned to the device's logical block.
//! The buffers are page-aligned mappings of [`WRITE_SIZE`], each filled *completely* before it is
//! written, so every write starts at a multiple of the buffer size. Why that size and not the
//! 64 KiB registered buffers: each direct write is a block-layer request, and on this VM's disk
//! 64 KiB writes cost 6 to 10 times the kernel CPU of 1 MiB ones for the same bytes (`dd
//! oflag=direct` of 2 GiB: 1.3 to 1.9 s of system time at bs=64K, 0.16 to 0.25 s at 1M) and
//! took three times as long. The last, partial buffer is zero-padded to the
//! alignment and written whole; the file is then cut to its exact size. Space is preallocated in
//! growing steps (`fallocate`), so the writes fill allocated blocks instead of extending the file one
//! write at a time. A file system that refuses O_DIRECT (EINVAL) gets the same writes buffered.
//!
//! The bytes are received straight into the buffer (`RecvAppend`) and written from it by a ring
//! op: a direct write can wait on the device, and the core must keep serving its other sessions
//! meanwhile. Up to `IN_FLIGHT` buffers circulate: one receiving, the others being written.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::mapbuf::MapBuf;
use crate::engine::op::write::WriteFrom;
use crate::engine::op::{self, Op};
use crate::engine::{direct, time};
use crate::server::storage::FileSink;

use super::failure::{stalled, StoreError};

/// Alignment of direct writes: a page, which covers 512-byte and 4 KiB logical blocks.
pub const ALIGN: u64 = 4096;

/// Buffers one direct upload circulates.
const IN_FLIGHT: usize = 3;

/// Bytes per direct write (and per buffer).
pub const WRITE_SIZE: usize = 1 << 20;

/// Direct-write buffers a core maps at once, over all its uploads (64 MiB): past it, a new large
/// upload stays on the buffered path, so a thousand large uploads cost no more memory than this.
const CORE_BUFFERS: usize = 64;

/// Buffers a core keeps mapped for its next direct uploads when no upload holds them (16 MiB).
/// A new mapping costs a page fault and a cleared page per 4 KiB, and its unmapping a TLB flush:
/// for 1 MiB files that was about a third of the server's CPU.
const CORE_SPARES: usize = 16;

thread_local! {
    /// Direct-write buffers this core's uploads hold now.
    static MAPPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Buffers kept for the next uploads (not counted in `MAPPED`), their pages in memory.
    static SPARES: std::cell::RefCell<Vec<MapBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A direct-write buffer counted against [`CORE_BUFFERS`], or `None` past it: a spare one if the
/// core has one, else a new mapping.
fn map_buffer() -> Option<MapBuf> {
    MAPPED.with(|m| {
        if m.get() >= CORE_BUFFERS {
            return None;
        }
        // The spare with the most pages in memory (the list is short).
        let spare = SPARES.with(|s| {
            let mut s = s.borrow_mut();
            let (i, _) = s.iter().enumerate().max_by_key(|(_, b)| b.touched())?;
            Some(s.swap_remove(i))
        });
        let buf = match spare {
            Some(b) => b,
            None => MapBuf::new(WRITE_SIZE).ok()?,
        };
        m.set(m.get() + 1);
        Some(buf)
    })
}

/// Keeps a buffer an upload is done with for the next one, up to [`CORE_SPARES`] (the upload's
/// [`Held`] count still covers it until the upload ends).
/// Past the limit it replaces a spare with fewer pages in memory: a buffer that only saw the end
/// of a stream has none, and keeping it would save nothing.
fn keep_spare(buf: MapBuf) {
    SPARES.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < CORE_SPARES {
            s.push(buf);
        } else if let Some(least) = s.iter_mut().min_by_key(|b| b.touched()) {
            if least.touched() < buf.touched() {
                *least = buf;
            }
        }
    });
}

/// Gives an upload's `held` buffers back to the core's count when the upload ends, however.
struct Held(usize);

impl Drop for Held {
    fn drop(&mut self) {
        MAPPED.with(|m| m.set(m.get().saturating_sub(self.0)));
    }
}

/// Preallocation: the first step (one write: a file that fits in it allocates only what it
/// uses, with no cut afterwards), and the largest.
const PREALLOC_MIN: u64 = WRITE_SIZE as u64;
const PREALLOC_MAX: u64 = 1 << 30;

/// Whether a file system's refusal of O_DIRECT was logged already: once per process is enough (a
/// latch for the log, not a mode: every upload still tries direct I/O).
static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// How a direct receive ended.
pub enum DirectEnd {
    /// The peer closed; the file ends at `end`, and `direct` bytes bypassed the page cache.
    Done { end: u64, direct: u64 },
    /// Direct I/O could not start here (no buffer could be mapped, an unaligned offset): the
    /// caller continues from this offset with another path.
    NotStarted(u64),
}

struct Writes {
    file: SharedFd,
    ops: Vec<(Op<WriteFrom<MapBuf>>, u64, usize)>,
    /// The file system refused an O_DIRECT write: everything is written buffered from then on.
    buffered: bool,
}

impl Writes {
    fn submit(&mut self, buf: MapBuf, offset: u64) {
        let len = buf.len();
        let op = op::write::write_from(&self.file, buf, offset);
        self.ops.push((op, offset, len));
    }

    /// Waits for one write and returns its buffer; resubmits it buffered if O_DIRECT was refused.
    async fn complete_one(&mut self) -> Result<MapBuf, StoreError> {
        loop {
            let (res, buf, offset, len) = poll_fn(|cx| {
                for i in 0..self.ops.len() {
                    let Some((op, offset, len)) = self.ops.get_mut(i) else {
                        break;
                    };
                    if let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) {
                        let (offset, len) = (*offset, *len);
                        self.ops.swap_remove(i);
                        return Poll::Ready((res, buf, offset, len));
                    }
                }
                Poll::Pending
            })
            .await;
            match res {
                Ok(n) if n == len => return Ok(buf),
                Ok(_) => return Err(StoreError::File(io::ErrorKind::WriteZero.into())),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.buffered => {
                    self.fall_back(&e)?;
                    self.submit(buf, offset);
                }
                Err(e) => return Err(StoreError::File(e)),
            }
        }
    }

    fn fall_back(&mut self, why: &io::Error) -> Result<(), StoreError> {
        self.buffered = true;
        log_refusal(why);
        direct::set_direct(&self.file, false).map_err(StoreError::File)
    }

    async fn drain(&mut self) -> Result<(), StoreError> {
        while !self.ops.is_empty() {
            keep_spare(self.complete_one().await?);
        }
        Ok(())
    }
}

fn log_refusal(why: &io::Error) {
    if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!(error = %why, "a file system refused O_DIRECT; uploads to it are written through the page cache");
    }
}

/// Receives the rest of an upload from `at` (a multiple of [`ALIGN`]) with direct writes.
pub async fn receive_direct(
    data: &SharedFd,
    sink: FileSink<'_>,
    at: u64,
    stall: Duration,
) -> Result<DirectEnd, StoreError> {
    if !at.is_multiple_of(ALIGN) {
        return Ok(DirectEnd::NotStarted(at));
    }
    let Some(first) = map_buffer() else {
        return Ok(DirectEnd::NotStarted(at));
    };
    let mut held = Held(1);
    let file = sink.file;
    let mut writes = Writes {
        file: file.clone(),
        ops: Vec::new(),
        buffered: false,
    };
    match direct::set_direct(file, true) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            writes.buffered = true;
            log_refusal(&e);
        }
        Err(e) => return Err(StoreError::File(e)),
    }
    let mut spare = vec![first];
    let mut offset = at;
    let mut allocated = at;
    let mut prealloc = true;
    loop {
        // A buffer to fill: a spare one, a new one while under the cap, or the next one written.
        let mut buf = match spare.pop() {
            Some(b) => b,
            None => match (held.0 < IN_FLIGHT).then(map_buffer).flatten() {
                Some(b) => {
                    held.0 += 1;
                    b
                }
                None => writes.complete_one().await?,
            },
        };
        buf.clear();
        let cap = buf.capacity();
        // Fill the buffer completely (or up to the end of the stream); every recv is progress.
        let mut eof = false;
        while buf.len() < cap {
            let (res, b) = match time::timeout(stall, op::recv::recv_append(data, buf)).await {
                Ok(r) => r,
                Err(_) => return Err(stalled()),
            };
            buf = b;
            match res {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::Net(e)),
            }
        }
        let n = buf.len();
        if n > 0 {
            // Space for this write and, in doubling steps, the ones after it: allocated once a
            // buffer holds bytes, so a stream that ends at a buffer's edge preallocates nothing
            // that must be cut off again.
            let padded = (n as u64).next_multiple_of(ALIGN);
            let end = offset + padded;
            if prealloc && end > allocated {
                let step = (allocated - at)
                    .clamp(PREALLOC_MIN, PREALLOC_MAX)
                    .max(end - allocated);
                match op::fallocate::fallocate(file, allocated, step, 0).await {
                    Ok(()) => allocated += step,
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                        return Err(StoreError::File(e))
                    }
                    // Not supported here: write without preallocating.
                    Err(_) => prealloc = false,
                }
            }
            sink.observe(offset, buf.as_ref());
            // Zero-pad the last block: the padding is cut off below, and must not carry bytes
            // the buffer held before.
            buf.pad_to(padded as usize);
            writes.submit(buf, offset);
            offset += n as u64;
        } else {
            spare.push(buf);
        }
        if eof {
            writes.drain().await?;
            spare.into_iter().for_each(keep_spare);
            // Cut the padding and any preallocation beyond the last byte.
            if !offset.is_multiple_of(ALIGN) || allocated > offset {
                op::ftruncate::ftruncate(file, offset)
                    .await
                    .map_err(StoreError::File)?;
            }
            let direct = if writes.buffered { 0 } else { offset - at };
            return Ok(DirectEnd::Done {
                end: offset,
                direct,
            });
        }
    }
}
