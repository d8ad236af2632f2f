//! The per-core runtime: one io_uring, the slab of in-flight ops, the completion loop.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use io_uring::{cqueue, squeue, IoUring};
use slab::Slab;

use super::bufpool::BufPool;
use super::caps::{self, Caps};
use super::executor;
use super::op::Lifecycle;
use super::pipe::PipePool;

/// `user_data` of SQEs whose completion nobody waits for (async cancel requests).
pub(crate) const IGNORE_KEY: u64 = u64::MAX;

/// Submits tried on a full submission queue before a push fails. One that succeeds makes room;
/// several failing in a row mean the kernel will not take more now.
const SUBMIT_ATTEMPTS: u32 = 8;

/// Sizes of one core's runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Submission queue entries (the completion queue is twice as large).
    pub entries: u32,
    /// Registered buffers in the pool (rounded up to a power of two); 0 disables the pool.
    pub buffers: u32,
    /// Size of each registered buffer.
    pub buffer_size: usize,
    /// Empty pipes kept for splice between uploads. Sized for hundreds of concurrent uploads per
    /// core: with 64, a core serving 256 uploads created and freed a pipe per file
    /// (`free_pipe_info` in the profile). Idle pipes hold no data pages, only their slot arrays.
    pub pipes: usize,
    /// Requested capacity of each pipe (F_SETPIPE_SZ); the kernel may grant less.
    pub pipe_size: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            buffers: 512,
            buffer_size: 64 * 1024,
            pipes: 512,
            pipe_size: 1 << 20,
        }
    }
}

/// One core's io_uring runtime. Lives in a thread-local; reached through [`with`].
pub struct Runtime {
    ring: RefCell<IoUring>,
    pub(crate) ops: RefCell<Slab<Lifecycle>>,
    bufpool: Option<BufPool>,
    pipes: PipePool,
    core: usize,
    /// What this ring supports beyond the minimum (probed at creation).
    caps: Cell<Caps>,
    /// SQEs pushed since the last submit; lets the loop skip an enter when idle.
    pending: Cell<u32>,
    #[cfg(test)]
    refuse_submits: Cell<bool>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Runtime>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's runtime.
///
/// # Panics
/// When called outside [`block_on`]: that is a programming error, never caused by input.
pub fn with<R>(f: impl FnOnce(&Runtime) -> R) -> R {
    let rt = CURRENT
        .with(|c| c.borrow().clone())
        .expect("no ringest runtime on this thread");
    f(&rt)
}

/// This thread's runtime, or `None` outside one (used from `Drop`, which may run at shutdown).
pub fn current() -> Option<Rc<Runtime>> {
    CURRENT.with(|c| c.borrow().clone())
}

impl Runtime {
    /// Builds a runtime for core `core`. Fails with a message naming RLIMIT_MEMLOCK when buffer
    /// registration is refused, because that is nearly always the cause.
    pub fn new(core: usize, cfg: &RuntimeConfig) -> io::Result<Runtime> {
        let ring = caps::ring_builder(cfg.entries)
            .build(cfg.entries)
            .map_err(caps::setup_error)?;
        let caps = caps::probe(&ring)?;
        let bufpool = if cfg.buffers > 0 {
            Some(BufPool::new(&ring, 0, cfg.buffers, cfg.buffer_size)?)
        } else {
            None
        };
        let pipes = PipePool::new(cfg.pipes, cfg.pipe_size);
        Ok(Runtime {
            ring: RefCell::new(ring),
            ops: RefCell::new(Slab::with_capacity(1024)),
            bufpool,
            pipes,
            core,
            caps: Cell::new(caps),
            pending: Cell::new(0),
            #[cfg(test)]
            refuse_submits: Cell::new(false),
        })
    }

    /// The core index this runtime serves.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Which optional opcodes this ring supports; the others fall back to direct calls.
    pub fn caps(&self) -> Caps {
        self.caps.get()
    }

    /// Pretends the ring lacks what `caps` says, to test the fallbacks on a new kernel.
    #[cfg(test)]
    pub(crate) fn set_caps(&self, caps: Caps) {
        self.caps.set(caps);
    }

    /// The registered buffer pool, if configured.
    pub fn bufpool(&self) -> Option<&BufPool> {
        self.bufpool.as_ref()
    }

    /// The pipe pool for splice.
    pub fn pipes(&self) -> &PipePool {
        &self.pipes
    }

    /// Number of ops in flight (including ignored ones still owning buffers).
    pub fn ops_in_flight(&self) -> usize {
        self.ops.borrow().len()
    }

    /// Pushes an SQE, flushing the submission queue to the kernel when it is full. Fails, with
    /// nothing queued, when the queue stays full (see [`make_room`](Self::make_room)).
    ///
    /// # Safety
    /// Every pointer inside `entry` must stay valid until the op's completion is reaped: callers pass
    /// only pointers into heap memory owned by an op's data, which the cancellation rule keeps alive.
    pub(crate) unsafe fn push(&self, entry: &squeue::Entry) -> io::Result<()> {
        let mut ring = self.ring.borrow_mut();
        self.make_room(&mut ring, 1)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { ring.submission().push(entry) }
            .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        self.pending.set(self.pending.get() + 1);
        Ok(())
    }

    /// Pushes two SQEs linked together (the second is usually a link timeout). Both land in one
    /// submission batch because a link must not be split across the queue's wrap; either both are
    /// queued or, on error, neither.
    ///
    /// # Safety
    /// As for [`push`](Self::push), for both entries.
    pub(crate) unsafe fn push_linked(
        &self,
        first: &squeue::Entry,
        second: &squeue::Entry,
    ) -> io::Result<()> {
        let mut ring = self.ring.borrow_mut();
        self.make_room(&mut ring, 2)?;
        let first = first.clone().flags(squeue::Flags::IO_LINK);
        let mut sq = ring.submission();
        // SAFETY: forwarded from this function's contract; `make_room` left room for both, so
        // neither push fails and the pair is never split.
        unsafe {
            sq.push(&first)
                .and_then(|()| sq.push(second))
                .map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))?;
        }
        drop(sq);
        self.pending.set(self.pending.get() + 2);
        Ok(())
    }

    /// Makes room for `need` SQEs, handing what is queued to the kernel when the queue is full.
    ///
    /// Submitting consumes the queued SQEs whatever their outcome, so one successful submit makes
    /// room; a submit that keeps failing (the kernel out of memory for requests, completions it
    /// could not post, a ring broken by a bug) would otherwise spin the core forever. After
    /// [`SUBMIT_ATTEMPTS`] it gives up with the last error, and the caller's op fails instead.
    fn make_room(&self, ring: &mut IoUring, need: usize) -> io::Result<()> {
        let mut last = None;
        for _ in 0..SUBMIT_ATTEMPTS {
            let sq = ring.submission();
            if sq.capacity() < need {
                // A queue smaller than a linked pair can never take one.
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            if sq.capacity() - sq.len() >= need {
                return Ok(());
            }
            drop(sq);
            if let Err(e) = self.submit_for_room(ring) {
                last = Some(e);
            }
        }
        let sq = ring.submission();
        if sq.capacity() - sq.len() >= need {
            return Ok(());
        }
        let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY));
        tracing::warn!(
            error = %e,
            attempts = SUBMIT_ATTEMPTS,
            "io_uring submission queue stays full; failing the op"
        );
        Err(e)
    }

    /// One submit to empty a full queue; tests can make it fail.
    fn submit_for_room(&self, ring: &IoUring) -> io::Result<usize> {
        #[cfg(test)]
        if self.refuse_submits.get() {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        ring.submit()
    }

    /// Makes every submit that would empty a full queue fail, as a kernel out of request memory
    /// would.
    #[cfg(test)]
    pub(crate) fn refuse_submits(&self, refuse: bool) {
        self.refuse_submits.set(refuse);
    }

    /// Asks the kernel to cancel the op with `key`; its completion (-ECANCELED or the real result)
    /// still arrives and is handled by the op's lifecycle. Returns whether the cancel was queued:
    /// when it was not, the op runs until it completes by itself, its memory still owned.
    pub(crate) fn cancel(&self, key: usize) -> bool {
        let entry = super::op::cancel::entry(key);
        // SAFETY: an async cancel carries no pointers.
        match unsafe { self.push(&entry) } {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(key, error = %e, "could not queue a cancel");
                false
            }
        }
    }

    /// Submits pending SQEs and, when `wait` is set, blocks until at least one completion is ready;
    /// then reaps all completions into the op slab, waking their tasks.
    fn turn(&self, wait: bool) -> io::Result<()> {
        {
            let mut ring = self.ring.borrow_mut();
            let want = usize::from(wait);
            // Sleep no longer than the earliest user-space timer.
            let timeout = if wait {
                super::timer::next_deadline().map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                None
            };
            if wait || self.pending.get() > 0 || ring.submission().taskrun() {
                let res = match timeout {
                    Some(t) if t.is_zero() => ring.submitter().submit(),
                    Some(t) => {
                        let ts = io_uring::types::Timespec::from(t);
                        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
                        ring.submitter().submit_with_args(want, &args)
                    }
                    None => ring.submitter().submit_and_wait(want),
                };
                match res {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EINTR | libc::EBUSY | libc::ETIME)
                        ) => {}
                    Err(e) => return Err(e),
                }
                self.pending.set(0);
            }
        }
        self.reap();
        super::timer::fire_expired(Instant::now());
        Ok(())
    }

    fn reap(&self) {
        // Completions are copied out first so no ring borrow is held while waking or cleaning up.
        let mut batch: [(u64, i32, u32); 64] = [(0, 0, 0); 64];
        loop {
            let n = {
                let mut ring = self.ring.borrow_mut();
                let mut cq = ring.completion();
                let mut n = 0;
                for cqe in &mut cq {
                    batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                    n += 1;
                    if n == batch.len() {
                        break;
                    }
                }
                n
            };
            if n == 0 {
                return;
            }
            for &(key, res, flags) in &batch[..n] {
                if key != IGNORE_KEY {
                    self.complete(key as usize, res, flags);
                }
            }
        }
    }

    fn complete(&self, key: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let waker = {
            let mut ops = self.ops.borrow_mut();
            let Some(lc) = ops.get_mut(key) else {
                tracing::warn!(key, res, "completion for an unknown op");
                return;
            };
            match lc.on_completion(res, flags, more) {
                Some(super::op::AfterCompletion::Wake(w)) => Some(w),
                Some(super::op::AfterCompletion::Remove) => {
                    let lc = ops.remove(key);
                    drop(ops);
                    // Dropping the lifecycle frees buffers the kernel is now done with.
                    drop(lc);
                    None
                }
                None => None,
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Ops still in flight may reference memory they own; the kernel tears the ring down
        // asynchronously, so freeing that memory now could let it write into freed pages. Leak it: a
        // runtime is dropped only when its thread ends.
        let ops = std::mem::take(self.ops.get_mut());
        if !ops.is_empty() {
            std::mem::forget(ops);
            if let Some(pool) = self.bufpool.take() {
                std::mem::forget(pool);
            }
        }
    }
}

/// Runs `future` to completion on a new runtime for this thread, driving every task spawned meanwhile.
pub fn block_on<F: Future + 'static>(
    core: usize,
    cfg: &RuntimeConfig,
    future: F,
) -> io::Result<F::Output>
where
    F::Output: 'static,
{
    let rt = Rc::new(Runtime::new(core, cfg)?);
    CURRENT.with(|c| *c.borrow_mut() = Some(rt.clone()));
    let mut main = executor::spawn_local(future);
    // The main task's handle is polled only once the task has finished, so its waker never fires.
    let waker = Waker::from(Arc::new(NoWake));
    let outcome = loop {
        executor::run_ready(256);
        if main.is_finished() {
            // A panic of the main future is caught by the executor like any task's; polling its
            // handle resumes it, and it is raised again below, once this thread's runtime is torn
            // down, instead of leaving the loop to wait for a result that never comes.
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                Pin::new(&mut main).poll(&mut Context::from_waker(&waker))
            }));
            match polled {
                Ok(Poll::Ready(out)) => break Ok(Ok(out)),
                Ok(Poll::Pending) => {}
                Err(panic) => break Ok(Err(panic)),
            }
        }
        let idle = !executor::has_ready();
        if let Err(e) = rt.turn(idle) {
            break Err(e);
        }
    };
    drop(main);
    executor::clear();
    CURRENT.with(|c| *c.borrow_mut() = None);
    drop(rt);
    match outcome {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(e),
    }
}

/// A waker for a handle that is polled only when already finished.
struct NoWake;

impl Wake for NoWake {
    fn wake(self: Arc<Self>) {}
}

/// Spawns a task on the current core; it never migrates.
pub fn spawn<F>(future: F) -> executor::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    executor::spawn_local(future)
}
