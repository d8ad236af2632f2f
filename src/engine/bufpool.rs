//! The per-core registered buffer pool.
//!
//! One page-aligned region of `count` equal buffers is registered with the ring (so WRITE_FIXED and
//! READ_FIXED skip the per-op page pinning) and the same buffers back a provided-buffer ring (so a
//! multishot recv picks a free buffer itself). A received buffer is therefore written to the file
//! straight from where the kernel put it. A further quarter of the pool is registered but kept out of
//! the ring, for reads the server starts itself (RETR).
//!
//! Ownership: a buffer is either in the provided ring (the kernel may fill it), or held by exactly one
//! [`PoolBuf`] (in user code or in an op's data). Dropping the `PoolBuf` returns it to where it came
//! from; ops keep their `PoolBuf` until their completion, so the kernel never fills a buffer that is
//! still being written out.

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Poll, Waker};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// A registered buffer pool backing one provided-buffer group.
pub struct BufPool {
    inner: Rc<Inner>,
}

struct Inner {
    mem: NonNull<u8>,
    mem_len: usize,
    buf_size: usize,
    /// Buffers in the provided ring: ids `0..ring_count`.
    ring_count: u16,
    /// Registered buffers kept out of the ring: ids `ring_count..ring_count + free.len()` at start.
    free: RefCell<Vec<u16>>,
    ring: NonNull<BufRingEntry>,
    ring_len: usize,
    tail: Cell<u16>,
    group: u16,
    /// Ring buffers currently held by user code or ops (not available to the kernel).
    held: Cell<u16>,
    waiters: RefCell<Vec<Waker>>,
}

fn mmap_anon(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: anonymous private mapping; no file or existing memory is involved.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl BufPool {
    /// Allocates and registers `count` (rounded up to a power of two, at most 8192) buffers of `size`
    /// bytes, plus a quarter as many kept out of the provided ring.
    pub fn new(ring: &IoUring, group: u16, count: u32, size: usize) -> io::Result<BufPool> {
        let ring_count = count.clamp(1, 8192).next_power_of_two() as u16;
        let extra = (ring_count / 4).max(1);
        let total = usize::from(ring_count) + usize::from(extra);
        let size = size.max(4096).next_multiple_of(4096);
        let mem_len = total * size;
        let mem = mmap_anon(mem_len)?;
        let ring_len =
            (usize::from(ring_count) * std::mem::size_of::<BufRingEntry>()).next_multiple_of(4096);
        let ring_mem = match mmap_anon(ring_len) {
            Ok(p) => p.cast::<BufRingEntry>(),
            Err(e) => {
                // SAFETY: unmapping the region mapped just above, which nothing references yet.
                unsafe { libc::munmap(mem.as_ptr().cast(), mem_len) };
                return Err(e);
            }
        };
        let inner = Inner {
            mem,
            mem_len,
            buf_size: size,
            ring_count,
            free: RefCell::new((ring_count..ring_count + extra).rev().collect()),
            ring: ring_mem,
            ring_len,
            tail: Cell::new(0),
            group,
            held: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        };
        let iovecs: Vec<libc::iovec> = (0..total)
            .map(|i| libc::iovec {
                // SAFETY: offset within the mapping of `total * size` bytes.
                iov_base: unsafe { mem.as_ptr().add(i * size) }.cast(),
                iov_len: size,
            })
            .collect();
        // SAFETY: the iovecs describe the mapping owned by `inner`, which outlives the registration
        // (the ring is dropped before or with the pool; see Runtime's Drop).
        unsafe { ring.submitter().register_buffers(&iovecs) }
            .map_err(|e| memlock_error(e, mem_len))?;
        // SAFETY: `ring_mem` is a page-aligned mapping of `ring_count` entries owned by `inner`.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ring_mem.as_ptr() as u64,
                ring_count,
                group,
                0,
            )
        }
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("registering the provided-buffer ring failed: {e}"),
            )
        })?;
        for bid in 0..ring_count {
            inner.push_to_ring(bid);
        }
        Ok(BufPool {
            inner: Rc::new(inner),
        })
    }

    /// The provided-buffer group id for SQEs that select buffers.
    pub fn group(&self) -> u16 {
        self.inner.group
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Ring buffers the kernel can currently pick.
    pub fn available(&self) -> usize {
        usize::from(self.inner.ring_count - self.inner.held.get())
    }

    /// Takes ownership of the buffer the kernel selected for a completion of `len` bytes.
    pub(crate) fn take_selected(&self, bid: u16, len: usize) -> PoolBuf {
        self.inner.held.set(self.inner.held.get() + 1);
        PoolBuf {
            pool: self.inner.clone(),
            bid,
            len: len.min(self.inner.buf_size),
        }
    }

    /// Returns a selected buffer that nobody took back to the ring.
    pub(crate) fn recycle(&self, bid: u16) {
        self.inner.held.set(self.inner.held.get() + 1);
        drop(PoolBuf {
            pool: self.inner.clone(),
            bid,
            len: 0,
        });
    }

    /// A registered buffer outside the ring, for reads the server issues itself; `None` when all are
    /// in use (fall back to an ordinary buffer).
    pub fn alloc(&self) -> Option<PoolBuf> {
        let bid = self.inner.free.borrow_mut().pop()?;
        Some(PoolBuf {
            pool: self.inner.clone(),
            bid,
            len: 0,
        })
    }

    /// Resolves once the ring has at least `min` free buffers (after an ENOBUFS).
    pub async fn wait_available(&self, min: usize) {
        std::future::poll_fn(|cx| {
            if self.available() >= min {
                Poll::Ready(())
            } else {
                self.inner.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

fn memlock_error(e: io::Error, bytes: usize) -> io::Error {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    io::Error::new(
        e.kind(),
        format!(
            "registering {} KiB of I/O buffers failed ({e}); RLIMIT_MEMLOCK is {} KiB: raise it (ulimit -l, \
             LimitMEMLOCK= in systemd) or lower the buffer pool (--buffers / --buffer-size)",
            bytes / 1024,
            if limit.rlim_cur == libc::RLIM_INFINITY { u64::MAX / 1024 } else { limit.rlim_cur / 1024 }
        ),
    )
}

impl Inner {
    fn push_to_ring(&self, bid: u16) {
        let tail = self.tail.get();
        let mask = self.ring_count - 1;
        // SAFETY: index masked into the ring's `ring_count` entries; the kernel reads entries only
        // below the published tail, and this slot is past it.
        unsafe {
            let entry = &mut *self.ring.as_ptr().add(usize::from(tail & mask));
            entry.set_addr(self.mem.as_ptr().add(usize::from(bid) * self.buf_size) as u64);
            entry.set_len(self.buf_size as u32);
            entry.set_bid(bid);
        }
        let tail = tail.wrapping_add(1);
        self.tail.set(tail);
        // SAFETY: the tail lives in the first entry's reserved field of the shared ring; the kernel
        // reads it with acquire semantics, so a release store publishes the entry written above.
        unsafe {
            (*(BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16))
                .store(tail, Ordering::Release)
        };
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `BufPool::new`; the last `PoolBuf` is gone, and the runtime
        // leaks the pool instead of dropping it while ops might still use it.
        unsafe {
            libc::munmap(self.mem.as_ptr().cast(), self.mem_len);
            libc::munmap(self.ring.as_ptr().cast(), self.ring_len);
        }
    }
}

/// One registered buffer, owned; returns to the pool on drop.
pub struct PoolBuf {
    pool: Rc<Inner>,
    bid: u16,
    len: usize,
}

impl PoolBuf {
    /// The registered-buffer index (for READ_FIXED / WRITE_FIXED).
    pub fn index(&self) -> u16 {
        self.bid
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn capacity(&self) -> usize {
        self.pool.buf_size
    }
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(self.pool.buf_size);
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the buffer lies within the mapping; `len <= buf_size`; this PoolBuf is its only owner.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
    pub(crate) fn as_ptr(&self) -> *const u8 {
        // SAFETY: offset of buffer `bid` within the mapping.
        unsafe {
            self.pool
                .mem
                .as_ptr()
                .add(usize::from(self.bid) * self.pool.buf_size)
        }
    }
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.as_ptr() as *mut u8
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        let pool = &self.pool;
        if self.bid < pool.ring_count {
            pool.held.set(pool.held.get().saturating_sub(1));
            pool.push_to_ring(self.bid);
            let waiters = std::mem::take(&mut *pool.waiters.borrow_mut());
            for w in waiters {
                w.wake();
            }
        } else {
            pool.free.borrow_mut().push(self.bid);
        }
    }
}
