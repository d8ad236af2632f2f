//! io_uring operations, one per file, and the lifecycle they share.
//!
//! Each op's data type implements [`OpData`] (or [`MultiData`] for a multishot op): it builds its
//! SQE from pointers into heap memory it owns, and turns the completion into a result. [`Op`]
//! submits it at creation and is a future of that result. The ownership rule for every op: the
//! memory an SQE points to belongs to the op's data, and the data lives until the kernel posts the
//! completion, even when the future is dropped first (then the data moves into the slab as
//! [`Lifecycle::Ignored`] and is freed when the completion is reaped).
//!
//! **Why the two traits are `unsafe trait`s, not sealed ones.** [`Op`] hands the SQE to the kernel
//! as it is, so a wrong pointer in it is undefined behaviour however safe the code that built it
//! looks. That is a proof obligation the type system cannot check, and Rust's tool for one is an
//! unsafe trait: every implementation is an `unsafe impl` with a `// SAFETY:` comment next to the
//! SQE it builds, which is where the op's buffer-ownership rule is written anyway, and `grep
//! "unsafe impl"` lists every place that can break it. Sealing would only move the trust to "every
//! implementation inside this crate is right" while those implementations stayed safe-looking
//! code, and it would shut out an op defined elsewhere (loadgen, a storage backend) for no gain.
//! loadgen implements neither trait; it builds ops with the constructors.
//!
//! **An op is fused.** Its slab key is given back when the op completes and goes to the next op
//! submitted, so a finished [`Op`] must never look it up again: it could take that op's completion,
//! or replace its `Ignored` entry and free a buffer the kernel is writing into. After `Ready`, an
//! `Op` returns `Pending` forever without touching the runtime (it cannot build an error of a
//! generic output type, and a panic would take down a task for a caller's mistake);
//! [`MultiOp::poll_next`] returns `Ready(None)` forever after its last item.
//!
//! **An SQE the ring refuses** (the submission queue stays full because submitting keeps failing,
//! see `Runtime::push`) is never seen by the kernel, so nothing points
//! into the op's data: the op completes at once with that error, as if the kernel had returned it.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::squeue;

use super::runtime;

pub mod accept;
pub mod cancel;
pub mod close;
pub mod connect;
pub mod fallocate;
pub mod fsync;
pub mod ftruncate;
pub mod link;
pub mod mkdir;
pub mod open;
pub mod poll;
pub mod read;
pub mod recv;
pub mod recv_multi;
pub mod rename;
pub mod send;
pub mod splice;
pub mod statx;
pub mod timeout;
pub mod unlink;
pub mod write;
pub mod xattr;

/// One completion: the raw result (negative errno on failure) and the CQE flags.
#[derive(Clone, Copy, Debug)]
pub struct Cqe {
    pub res: i32,
    pub flags: u32,
}

impl Cqe {
    /// The result as `io::Result`, mapping a negative value to the errno it carries.
    pub fn result(&self) -> std::io::Result<u32> {
        if self.res < 0 {
            Err(std::io::Error::from_raw_os_error(-self.res))
        } else {
            Ok(self.res as u32)
        }
    }

    /// The completion of an SQE that never reached the kernel: `err` as a negative errno, no flags.
    /// Being negative, it claims nothing about memory or descriptors, which is why ops can be
    /// completed with it safely.
    fn refused(err: &io::Error) -> Cqe {
        let errno = err.raw_os_error().filter(|&e| e > 0).unwrap_or(libc::EIO);
        Cqe {
            res: -errno,
            flags: 0,
        }
    }
}

/// The spare capacity of `buf` as a pointer and length for an SQE that appends to it.
pub(crate) fn spare(buf: &mut Vec<u8>) -> (*mut u8, u32) {
    let len = buf.len();
    let room = (buf.capacity() - len).min(u32::MAX as usize) as u32;
    // SAFETY: pointer arithmetic within the Vec's allocation (len <= capacity).
    (unsafe { buf.as_mut_ptr().add(len) }, room)
}

/// Completes an append into `buf`'s spare capacity: on success, the `n` bytes the kernel wrote become
/// part of the Vec.
pub(crate) fn appended(buf: &mut Vec<u8>, cqe: Cqe) -> std::io::Result<usize> {
    let n = cqe.result()? as usize;
    let len = buf.len();
    // The kernel never reports more than the room it was given; clamp anyway rather than trust it.
    let n = n.min(buf.capacity() - len);
    // SAFETY: the kernel initialised `n` bytes of the spare capacity, which `spare` described.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Releases what a completion produced when nobody is left to take it (an accepted or opened fd to
/// close, a provided buffer to recycle).
pub type Cleanup = fn(i32, u32);

/// Where an op is in its life, stored in the runtime's slab under the op's `user_data`.
pub enum Lifecycle {
    /// Submitted; nobody has polled it yet.
    Submitted,
    /// A task is waiting for the completion.
    Waiting(Waker),
    /// The completion arrived before the future was polled again.
    Completed(Cqe),
    /// The future was dropped: the slab owns the op's memory until the kernel is done with it.
    Ignored {
        _data: Box<dyn Any>,
        cleanup: Cleanup,
    },
    /// A multishot op: completions queue up until the stream takes them.
    Multi {
        queue: VecDeque<Cqe>,
        waker: Option<Waker>,
        done: bool,
    },
}

pub(crate) enum AfterCompletion {
    Wake(Waker),
    Remove,
}

impl Lifecycle {
    pub(crate) fn on_completion(
        &mut self,
        res: i32,
        flags: u32,
        more: bool,
    ) -> Option<AfterCompletion> {
        let cqe = Cqe { res, flags };
        match self {
            Lifecycle::Submitted => {
                *self = Lifecycle::Completed(cqe);
                None
            }
            Lifecycle::Waiting(_) => match std::mem::replace(self, Lifecycle::Completed(cqe)) {
                Lifecycle::Waiting(w) => Some(AfterCompletion::Wake(w)),
                _ => None,
            },
            Lifecycle::Completed(_) => {
                tracing::warn!(res, "second completion for a single-shot op");
                None
            }
            Lifecycle::Ignored { cleanup, .. } => {
                cleanup(res, flags);
                (!more).then_some(AfterCompletion::Remove)
            }
            Lifecycle::Multi { queue, waker, done } => {
                queue.push_back(cqe);
                if !more {
                    *done = true;
                }
                waker.take().map(AfterCompletion::Wake)
            }
        }
    }
}

/// The data of one single-shot io_uring operation.
///
/// # Safety
///
/// [`Op`] gives the entry that [`sqe`](OpData::sqe) builds to the kernel without looking at it, so
/// the implementor guarantees, for that entry:
///
/// - Every pointer in it (buffer, path, `open_how`, `statx` buffer, timespec, socket address)
///   points into memory that `self` owns and that stays where it is when `self` moves: a heap
///   allocation (`Vec`, `Box`, `CString`) or a registered pool buffer held by a [`PoolBuf`]. `self`
///   is moved after `sqe` returns (into the `Op`, and into the runtime's slab if the `Op` is dropped
///   early) and is dropped only after the completion has been reaped, so such memory is valid until
///   then. The memory is valid for the length the entry states, for writing where the kernel writes
///   (and nothing else reads or writes it until the completion), for reading where it reads (and
///   nothing else writes or frees it until the completion; shared read-only handles such as
///   `Rc<PoolBuf>` are fine).
/// - Every file descriptor in it is kept open by `self` (a [`SharedFd`] clone) until the
///   completion, so the number cannot be closed and reused for another file meanwhile, or, as for
///   CLOSE, is owned by the op and given to the kernel.
/// - It produces exactly one completion: no multishot flag, no `IOSQE_CQE_SKIP_SUCCESS`, no
///   `IO_LINK`/`IO_HARDLINK` (the runtime links entries itself). A second completion would reach the
///   slab key after it was given to another op and be taken as that op's result (a byte count for a
///   buffer nobody wrote). Its `user_data` is overwritten.
///
/// And for the other methods:
///
/// - [`complete`](OpData::complete) and [`cleanup`](OpData::cleanup) trust a non-negative result
///   only as far as the opcode defines it (bytes the kernel wrote into the op's buffer, a descriptor
///   it created), and are sound for any negative result with no flags: that is how an op whose SQE
///   the ring refused completes.
/// - [`not_queued`](OpData::not_queued) undoes what `sqe` handed to the kernel, for an entry the
///   kernel never saw.
///
/// [`PoolBuf`]: crate::engine::bufpool::PoolBuf
/// [`SharedFd`]: crate::engine::fd::SharedFd
pub unsafe trait OpData: Unpin + 'static {
    type Output;
    /// Builds the SQE; called once, right before it is queued.
    fn sqe(&mut self) -> squeue::Entry;
    /// Turns the completion into the op's result, handing back the owned memory.
    fn complete(self, cqe: Cqe) -> Self::Output;
    /// Releases what a completion produced if the future was dropped before it arrived.
    fn cleanup(_res: i32, _flags: u32) {}
    /// The SQE from `sqe` was never queued (the ring refused it): take back what it handed over,
    /// e.g. a descriptor CLOSE was to consume. The op then completes with the ring's error.
    fn not_queued(&mut self) {}
}

/// Where an [`Op`] is.
enum State {
    /// Queued under this slab key; the slab holds its lifecycle.
    InFlight(usize),
    /// Never queued; this is its result (the ring's error, or what a direct call returned).
    Settled(Cqe),
    /// Returned `Ready`: owns no key any more.
    Done,
}

/// A submitted single-shot operation; await it for the result.
pub struct Op<T: OpData> {
    state: State,
    data: Option<T>,
}

impl<T: OpData> Op<T> {
    /// Submits the op now (SQEs are pushed eagerly and flushed by the completion loop). If the ring
    /// refuses the SQE, the op completes with that error instead.
    pub fn new(mut data: T) -> Op<T> {
        runtime::with(|rt| {
            let key = rt.ops.borrow_mut().insert(Lifecycle::Submitted);
            let entry = data.sqe().user_data(key as u64);
            // SAFETY: by `OpData`'s contract the entry points only into memory owned by `data`,
            // which this Op (or, once it is dropped, the slab) keeps alive until the completion for
            // `key` is reaped.
            match unsafe { rt.push(&entry) } {
                Ok(()) => Op {
                    state: State::InFlight(key),
                    data: Some(data),
                },
                Err(e) => {
                    rt.ops.borrow_mut().remove(key);
                    Op::refused(data, &e)
                }
            }
        })
    }

    /// Submits the op linked to a timeout: the kernel cancels it (-ECANCELED) if it has not completed
    /// within `dur`.
    pub fn with_timeout(mut data: T, dur: std::time::Duration) -> Op<T> {
        runtime::with(|rt| {
            let key = rt.ops.borrow_mut().insert(Lifecycle::Submitted);
            let entry = data.sqe().user_data(key as u64);
            let (tentry, ts) = timeout::link_timeout(dur);
            // The timeout SQE's memory (the timespec) is owned by the slab from the start.
            let tkey = rt.ops.borrow_mut().insert(Lifecycle::Ignored {
                _data: ts,
                cleanup: |_, _| {},
            });
            let tentry = tentry.user_data(tkey as u64);
            // SAFETY: `entry` points into `data` (kept alive by this Op or the slab); `tentry` points
            // into the boxed timespec the slab owns until that SQE completes.
            match unsafe { rt.push_linked(&entry, &tentry) } {
                Ok(()) => Op {
                    state: State::InFlight(key),
                    data: Some(data),
                },
                Err(e) => {
                    // Neither entry was queued (both or none): the timespec can go.
                    let mut ops = rt.ops.borrow_mut();
                    ops.remove(tkey);
                    ops.remove(key);
                    drop(ops);
                    Op::refused(data, &e)
                }
            }
        })
    }

    /// An op whose SQE the ring refused: it completes with `err` when polled.
    fn refused(mut data: T, err: &io::Error) -> Op<T> {
        data.not_queued();
        Op {
            state: State::Settled(Cqe::refused(err)),
            data: Some(data),
        }
    }

    /// An op that never goes to the ring because the call was made directly (a fallback for an
    /// opcode the kernel lacks); it completes with `cqe` when polled.
    ///
    /// # Safety
    /// `cqe` must be what the kernel would have posted for `data`'s SQE after doing what the direct
    /// call did: `complete` trusts a non-negative result as the opcode defines it (bytes in the
    /// op's buffer, a new descriptor).
    pub(crate) unsafe fn completed(data: T, cqe: Cqe) -> Op<T> {
        Op {
            state: State::Settled(cqe),
            data: Some(data),
        }
    }

    /// The slab key while the op is in flight (tests check which slot an op took).
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<usize> {
        match self.state {
            State::InFlight(key) => Some(key),
            _ => None,
        }
    }
}

impl<T: OpData> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        let cqe = match this.state {
            // Fused: the key may belong to another op by now (see the module docs).
            State::Done => return Poll::Pending,
            State::Settled(cqe) => cqe,
            State::InFlight(key) => {
                let cqe = runtime::with(|rt| {
                    let mut ops = rt.ops.borrow_mut();
                    match ops.get_mut(key) {
                        Some(Lifecycle::Completed(cqe)) => {
                            let cqe = *cqe;
                            ops.remove(key);
                            Some(cqe)
                        }
                        Some(Lifecycle::Waiting(w)) if w.will_wake(cx.waker()) => None,
                        Some(lc @ (Lifecycle::Submitted | Lifecycle::Waiting(_))) => {
                            *lc = Lifecycle::Waiting(cx.waker().clone());
                            None
                        }
                        // Only this Op removes its key, and only after its completion; another
                        // state here is a bug, and overwriting it could free someone's buffer.
                        _ => {
                            tracing::error!(key, "in-flight op's slab entry is missing or foreign");
                            None
                        }
                    }
                });
                match cqe {
                    Some(cqe) => cqe,
                    None => return Poll::Pending,
                }
            }
        };
        this.state = State::Done;
        match this.data.take() {
            Some(data) => Poll::Ready(data.complete(cqe)),
            None => Poll::Pending,
        }
    }
}

impl<T: OpData> Drop for Op<T> {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let Some(data) = self.data.take() else { return };
        let key = match state {
            State::InFlight(key) => key,
            State::Settled(cqe) => {
                // The kernel never saw `data`; release what the result produced, as for a
                // completion nobody took.
                drop(data);
                T::cleanup(cqe.res, cqe.flags);
                return;
            }
            State::Done => return,
        };
        let Some(rt) = runtime::current() else {
            // No runtime: the thread is shutting down and the ring is going away asynchronously; the
            // kernel may still write into `data`, so it must not be freed.
            std::mem::forget(data);
            return;
        };
        let mut ops = rt.ops.borrow_mut();
        match ops.get_mut(key) {
            Some(Lifecycle::Completed(cqe)) => {
                let cqe = *cqe;
                ops.remove(key);
                drop(ops);
                T::cleanup(cqe.res, cqe.flags);
            }
            Some(lc @ (Lifecycle::Submitted | Lifecycle::Waiting(_))) => {
                *lc = Lifecycle::Ignored {
                    _data: Box::new(data),
                    cleanup: T::cleanup,
                };
                drop(ops);
                rt.cancel(key);
            }
            // Not ours (a bug; see `poll`): keep the memory rather than risk freeing it early.
            _ => std::mem::forget(data),
        }
    }
}

/// The data of a multishot operation: one SQE, many completions.
///
/// # Safety
///
/// As for [`OpData`], with "until the completion" read as "until the final completion, the one
/// without `IORING_CQE_F_MORE`": the entry's pointers and descriptors stay valid that long, every
/// completion before the final one carries `MORE`, and [`item`](MultiData::item) and
/// [`cleanup`](MultiData::cleanup) are sound for any negative result with no flags. Buffers the
/// kernel selects from the provided-buffer ring belong to the pool, not to the op; `item` takes
/// the one a completion names and `cleanup` returns it.
pub unsafe trait MultiData: Unpin + 'static {
    type Item;
    fn sqe(&mut self) -> squeue::Entry;
    /// Turns one completion into an item.
    fn item(&mut self, cqe: Cqe) -> Self::Item;
    /// Releases what a completion produced when the stream was dropped before taking it.
    fn cleanup(_res: i32, _flags: u32) {}
}

/// Where a [`MultiOp`] is.
enum MultiState {
    /// Queued under this slab key until the stream has taken the final completion.
    InFlight(usize),
    /// Never queued: its only item is the ring's error.
    Settled(Cqe),
    /// The final item was taken: owns no key any more.
    Finished,
}

/// A submitted multishot operation: a stream of completions, ending with the one without MORE.
pub struct MultiOp<T: MultiData> {
    state: MultiState,
    data: Option<T>,
    /// [`MultiOp::stop`] asked the kernel to end it.
    stopping: bool,
}

impl<T: MultiData> MultiOp<T> {
    /// Submits the multishot now; if the ring refuses the SQE, the stream yields that error as its
    /// only item.
    pub fn new(mut data: T) -> MultiOp<T> {
        runtime::with(|rt| {
            let key = rt.ops.borrow_mut().insert(Lifecycle::Multi {
                queue: VecDeque::new(),
                waker: None,
                done: false,
            });
            let entry = data.sqe().user_data(key as u64);
            // SAFETY: as for `Op::new`: by `MultiData`'s contract the entry points into `data`, kept
            // alive until the final CQE.
            let state = match unsafe { rt.push(&entry) } {
                Ok(()) => MultiState::InFlight(key),
                Err(e) => {
                    rt.ops.borrow_mut().remove(key);
                    MultiState::Settled(Cqe::refused(&e))
                }
            };
            MultiOp {
                state,
                data: Some(data),
                stopping: false,
            }
        })
    }

    /// Asks the kernel to end the multishot, keeping what it already produced: completions that
    /// arrive before the cancel takes effect stay queued for [`MultiOp::poll_next`], which then
    /// ends with the final one (usually `-ECANCELED`). Unlike dropping the op, nothing received is
    /// thrown away; it only stops taking new resources (e.g. pool buffers) from now on. If the
    /// cancel cannot be queued, the multishot goes on and a later `stop` tries again.
    pub fn stop(&mut self) {
        let MultiState::InFlight(key) = self.state else {
            return;
        };
        if self.stopping {
            return;
        }
        self.stopping = runtime::with(|rt| rt.cancel(key));
    }

    /// The next completion's item, or `None` after the final one (and forever after).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T::Item>> {
        let key = match self.state {
            // Fused: the key may belong to another op by now (see the module docs).
            MultiState::Finished => return Poll::Ready(None),
            MultiState::Settled(cqe) => {
                self.state = MultiState::Finished;
                return Poll::Ready(self.data.as_mut().map(|data| data.item(cqe)));
            }
            MultiState::InFlight(key) => key,
        };
        let next = runtime::with(|rt| {
            let mut ops = rt.ops.borrow_mut();
            let Some(Lifecycle::Multi { queue, waker, done }) = ops.get_mut(key) else {
                return Poll::Ready(None);
            };
            match queue.pop_front() {
                Some(cqe) => {
                    let last = *done && queue.is_empty();
                    if last {
                        ops.remove(key);
                    }
                    Poll::Ready(Some((cqe, last)))
                }
                None => {
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        });
        match next {
            Poll::Ready(Some((cqe, last))) => {
                if last {
                    self.state = MultiState::Finished;
                }
                match self.data.as_mut() {
                    Some(data) => Poll::Ready(Some(data.item(cqe))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(None) => {
                self.state = MultiState::Finished;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Awaits the next item.
    pub async fn next(&mut self) -> Option<T::Item> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Whether the stream has yielded its final item (no more completions will come).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, MultiState::Finished)
    }

    /// The slab key while the multishot is in flight (tests check which slot an op took).
    #[cfg(test)]
    pub(crate) fn key(&self) -> Option<usize> {
        match self.state {
            MultiState::InFlight(key) => Some(key),
            _ => None,
        }
    }
}

impl<T: MultiData> Drop for MultiOp<T> {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, MultiState::Finished);
        let Some(data) = self.data.take() else { return };
        let key = match state {
            MultiState::InFlight(key) => key,
            MultiState::Settled(cqe) => {
                drop(data);
                T::cleanup(cqe.res, cqe.flags);
                return;
            }
            MultiState::Finished => return,
        };
        let Some(rt) = runtime::current() else {
            // See `Op`'s Drop: without a runtime the memory must outlive the ring.
            std::mem::forget(data);
            return;
        };
        let mut ops = rt.ops.borrow_mut();
        let Some(Lifecycle::Multi { queue, done, .. }) = ops.get_mut(key) else {
            // Not ours (a bug; see `Op::poll`): keep the memory rather than risk freeing it early.
            std::mem::forget(data);
            return;
        };
        let queued: Vec<Cqe> = queue.drain(..).collect();
        let done = *done;
        if done {
            ops.remove(key);
        } else if let Some(lc) = ops.get_mut(key) {
            *lc = Lifecycle::Ignored {
                _data: Box::new(data),
                cleanup: T::cleanup,
            };
        }
        drop(ops);
        for cqe in queued {
            T::cleanup(cqe.res, cqe.flags);
        }
        if !done {
            rt.cancel(key);
        }
    }
}
