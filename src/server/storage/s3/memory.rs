//! One core's share of `s3_memory_cap`, handed out as [`Grant`]s that give their bytes back when
//! dropped, and the wait for one (the back-pressure: an upload that waits reads nothing more from
//! its data connection, so TCP slows its client down).
//!
//! Each core has its own share (the cap divided by the cores): sessions never leave their core,
//! and a per-core budget needs no lock and no cross-thread wake-up.
//!
//! # Two pools, so that waiting can never deadlock
//! An upload does not know its size, and most files are small. Granting every upload a whole
//! part up front would let a 4 KiB file hold 8 MiB of the cap; granting in small steps as a
//! buffer grows can deadlock, when every upload holds a step and waits for the next. So:
//! - every upload starts with one **first step** ([`FIRST_STEP`]) from the *small* pool (a
//!   quarter of the share): files that end inside it never touch the other pool;
//! - an upload that outgrows its step asks the *parts* pool for a whole part, and only then gives
//!   the step back. Holders of parts never wait on the small pool, and a part in flight always
//!   ends (its request is bounded by `s3_timeout`), so the parts pool always drains.
//! - an upload asks for a second part only without waiting ([`Memory::try_take`]); if the pool is
//!   short it waits for its own part in flight instead and reuses that buffer.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

use crate::engine::sync::LocalEvent;
use crate::server::observe::metrics::CoreMetrics;

use super::budget::{Acquire, Budget, OverCap};
use crate::engine::mapbuf::MapBuf;

/// The first grant of every upload: files up to this size cost this much of the cap at most.
pub const FIRST_STEP: u64 = 1 << 20;

/// Part buffers a core keeps for the next uploads, and the memory their pages may hold (at most
/// an eighth of the core's share, taken off the parts pool so that buffers and spares together
/// stay within the cap): a fresh mapping costs a page fault and a cleared page per 4 KiB written,
/// and unmapping costs again (a quarter of the server's CPU with 1 MiB files).
const SPARE_BUFFERS: usize = 8;
const SPARE_BYTES: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Small,
    Parts,
}

/// One core's budget for object-store buffers.
pub struct Memory {
    small: RefCell<Budget<u64>>,
    parts: RefCell<Budget<u64>>,
    /// Waiters by id, set when their bytes are granted.
    waiting: RefCell<HashMap<u64, LocalEvent>>,
    next_id: Cell<u64>,
    /// Parts and PUTs being sent (for /metrics).
    in_flight: Cell<u64>,
    /// Buffers of finished uploads, cleared, for the next ones.
    spare: RefCell<Vec<MapBuf>>,
    /// Set (and replaced) when no upload waits for a part: new uploads wait for it.
    parts_free: RefCell<LocalEvent>,
    /// New uploads waiting at that gate.
    gated: Cell<usize>,
    /// The pages the spares may hold.
    spare_bytes: u64,
    metrics: Arc<CoreMetrics>,
}

/// Bytes of the budget, given back when dropped.
pub struct Grant {
    mem: Rc<Memory>,
    pool: Pool,
    bytes: u64,
}

impl Grant {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.mem.release(self.pool, self.bytes);
    }
}

/// Counts one part or PUT as in flight while it lives.
pub struct InFlight(Rc<Memory>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.publish();
    }
}

impl Memory {
    /// `share`: this core's part of the cap.
    pub fn new(share: u64, metrics: Arc<CoreMetrics>) -> Rc<Memory> {
        let small = (share / 4).max(FIRST_STEP);
        let spare_bytes = SPARE_BYTES.min(share / 8);
        Rc::new(Memory {
            small: RefCell::new(Budget::new(small)),
            parts: RefCell::new(Budget::new(
                share.saturating_sub(small + spare_bytes).max(1),
            )),
            waiting: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            in_flight: Cell::new(0),
            spare: RefCell::new(Vec::new()),
            parts_free: RefCell::new(LocalEvent::new()),
            gated: Cell::new(0),
            spare_bytes,
            metrics,
        })
    }

    /// A buffer for a part of `cap` bytes: a spare one if one is large enough, else a new one.
    pub fn buffer(&self, cap: usize) -> io::Result<MapBuf> {
        let mut spare = self.spare.borrow_mut();
        match spare.iter().position(|b| b.capacity() >= cap) {
            Some(i) => Ok(spare.swap_remove(i)),
            None => MapBuf::new(cap),
        }
    }

    /// Keeps a finished upload's buffer for the next upload, within the spare limits.
    pub fn recycle(&self, mut buf: MapBuf) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        let mut spare = self.spare.borrow_mut();
        let held: usize = spare.iter().map(MapBuf::touched).sum();
        if spare.len() < SPARE_BUFFERS && (held + buf.touched()) as u64 <= self.spare_bytes {
            spare.push(buf);
        }
    }

    fn pool(&self, pool: Pool) -> &RefCell<Budget<u64>> {
        match pool {
            Pool::Small => &self.small,
            Pool::Parts => &self.parts,
        }
    }

    /// `bytes` from `pool`, waiting for them in line if they are not free now. Dropping the
    /// future leaves the line (or gives back bytes granted meanwhile).
    ///
    /// A new upload (its first step, from the small pool) also waits while any admitted upload
    /// waits for a part: admitted uploads finish first. Otherwise the small pool admits uploads
    /// that then only wait for parts, each with a full socket buffer on both ends (with 1,000
    /// uploads of 64 MiB, 256 of them held 1.5 GB of kernel memory and put TCP into pressure).
    pub async fn take(self: &Rc<Self>, pool: Pool, bytes: u64) -> Result<Grant, OverCap> {
        if pool == Pool::Small {
            self.until_parts_free().await;
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let answer = self.pool(pool).borrow_mut().acquire(id, bytes)?;
        if answer == Acquire::Queued {
            let event = LocalEvent::new();
            self.waiting.borrow_mut().insert(id, event.clone());
            self.publish();
            let mut guard = Waiter {
                mem: self.clone(),
                pool,
                id,
                bytes,
                event,
                done: false,
            };
            let listener = guard.event.listen();
            poll_fn(|cx| listener.poll(cx)).await;
            guard.done = true;
        }
        self.publish();
        Ok(Grant {
            mem: self.clone(),
            pool,
            bytes,
        })
    }

    async fn until_parts_free(&self) {
        while self.parts.borrow().waiting() > 0 {
            let event = self.parts_free.borrow().clone();
            let listener = event.listen();
            self.gated.set(self.gated.get() + 1);
            self.publish();
            let _gate = Gate(self);
            poll_fn(|cx| listener.poll(cx)).await;
        }
    }

    /// `bytes` from `pool` only if they are free now and nobody waits ahead.
    pub fn try_take(self: &Rc<Self>, pool: Pool, bytes: u64) -> Option<Grant> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let answer = self.pool(pool).borrow_mut().acquire(id, bytes).ok()?;
        if answer == Acquire::Queued {
            let granted = self.pool(pool).borrow_mut().cancel(&id);
            self.wake(granted);
            return None;
        }
        self.publish();
        Some(Grant {
            mem: self.clone(),
            pool,
            bytes,
        })
    }

    /// A part or PUT starts; it ends when the returned guard drops.
    pub fn sending(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        self.publish();
        InFlight(self.clone())
    }

    fn release(&self, pool: Pool, bytes: u64) {
        let granted = self.pool(pool).borrow_mut().release(bytes);
        self.wake(granted);
        self.publish();
    }

    fn wake(&self, granted: Vec<(u64, u64)>) {
        for (id, _) in granted {
            if let Some(ev) = self.waiting.borrow_mut().remove(&id) {
                ev.set();
            }
        }
    }

    /// A store request failed after its retries.
    pub fn store_failed(&self) {
        self.metrics.s3_error();
    }

    /// Bytes granted now, both pools (what /metrics calls buffered: an upper bound of the bytes
    /// really held, since a buffer's pages are used only as they are filled).
    pub fn used(&self) -> u64 {
        self.small.borrow().used() + self.parts.borrow().used()
    }

    fn publish(&self) {
        let parts_waiting = self.parts.borrow().waiting();
        if parts_waiting == 0 && self.gated.get() > 0 {
            let open = self.parts_free.replace(LocalEvent::new());
            open.set();
        }
        let waiting = self.small.borrow().waiting() + parts_waiting + self.gated.get();
        self.metrics
            .s3_gauges(self.in_flight.get(), self.used(), waiting as u64);
    }
}

/// One new upload at the gate of [`Memory::until_parts_free`], counted while it waits.
struct Gate<'a>(&'a Memory);

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        self.0.gated.set(self.0.gated.get().saturating_sub(1));
    }
}

/// A place in line; leaving it (the upload was dropped while waiting) lets the others through.
struct Waiter {
    mem: Rc<Memory>,
    pool: Pool,
    id: u64,
    bytes: u64,
    event: LocalEvent,
    done: bool,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.event.is_set() {
            // Granted, but nobody will hold the grant: give the bytes back.
            self.mem.release(self.pool, self.bytes);
        } else {
            self.mem.waiting.borrow_mut().remove(&self.id);
            let granted = self.mem.pool(self.pool).borrow_mut().cancel(&self.id);
            self.mem.wake(granted);
            self.mem.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{block_on, spawn, RuntimeConfig};

    fn run<F: std::future::Future<Output = ()> + 'static>(f: F) {
        let cfg = RuntimeConfig {
            buffers: 0,
            ..RuntimeConfig::default()
        };
        block_on(0, &cfg, f).expect("runtime");
    }

    #[test]
    fn a_waiter_gets_its_bytes_when_a_grant_is_dropped_and_leaving_the_line_frees_the_next() {
        run(async {
            // A 16 MiB share: 4 MiB small pool, 2 MiB for spares, 10 MiB of parts.
            let mem = Memory::new(16 << 20, Arc::new(CoreMetrics::new(0)));
            assert_eq!(mem.parts.borrow().cap(), 10 << 20);
            let a = mem.take(Pool::Parts, 10 << 20).await.unwrap();
            assert!(
                mem.try_take(Pool::Parts, 1 << 20).is_none(),
                "10 of 10 used"
            );
            let m2 = mem.clone();
            let waiting =
                spawn(async move { m2.take(Pool::Parts, 8 << 20).await.map(|g| g.bytes()) });
            crate::engine::time::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(
                mem.metrics
                    .s3_uploads_waiting
                    .load(std::sync::atomic::Ordering::Relaxed),
                1
            );
            drop(a);
            assert_eq!(waiting.await.unwrap(), 8 << 20);
            assert_eq!(
                mem.used(),
                0,
                "the waiter's grant was dropped with its task's result"
            );
            // A waiter that gives up lets a smaller one behind it through.
            let b = mem.take(Pool::Parts, 8 << 20).await.unwrap();
            let m3 = mem.clone();
            let big = spawn(async move { m3.take(Pool::Parts, 10 << 20).await.map(|g| g.bytes()) });
            crate::engine::time::sleep(std::time::Duration::from_millis(5)).await;
            assert!(
                mem.try_take(Pool::Parts, 1 << 20).is_none(),
                "a waiter is ahead"
            );
            // Dropping the handle cancels the task; the executor drops its future on its next turn.
            drop(big);
            crate::engine::time::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(
                mem.parts.borrow().waiting(),
                0,
                "the cancelled waiter left the line"
            );
            assert!(mem.try_take(Pool::Parts, 1 << 20).is_some());
            drop(b);
            assert_eq!(mem.used(), 0);
        });
    }

    #[test]
    fn new_uploads_wait_while_admitted_ones_wait_for_a_part() {
        run(async {
            let mem = Memory::new(16 << 20, Arc::new(CoreMetrics::new(0)));
            let a = mem.take(Pool::Parts, 10 << 20).await.unwrap();
            let m = mem.clone();
            let part = spawn(async move { m.take(Pool::Parts, 8 << 20).await.map(|g| g.bytes()) });
            crate::engine::time::sleep(std::time::Duration::from_millis(5)).await;
            let m = mem.clone();
            let new = spawn(async move { m.take(Pool::Small, 1 << 20).await.map(|g| g.bytes()) });
            crate::engine::time::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(
                mem.small.borrow().used(),
                0,
                "the small pool has room, yet the new upload waits"
            );
            assert_eq!(mem.gated.get(), 1);
            drop(a);
            assert_eq!(part.await.unwrap(), 8 << 20);
            assert_eq!(new.await.unwrap(), 1 << 20);
            assert_eq!(mem.gated.get(), 0);
            assert_eq!(mem.used(), 0);
        });
    }
}
