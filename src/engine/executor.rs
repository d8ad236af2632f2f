//! A single-threaded executor for `!Send` tasks: one per core, no locks, no cross-thread wakeups.
//!
//! Built on `async-task`, whose `spawn_local` tasks may only be polled on the thread that spawned them;
//! our wakers fire only from the core's own completion loop, so a woken task always lands on the queue
//! of the thread that owns it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;

use async_task::{Runnable, Task};

thread_local! {
    static READY: RefCell<VecDeque<Runnable>> = const { RefCell::new(VecDeque::new()) };
}

/// Handle to a spawned task. Dropping it cancels the task; call `detach()` to let it run on.
pub type JoinHandle<T> = Task<T>;

/// Spawns a task on this thread's executor.
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let schedule = |runnable: Runnable| READY.with(|q| q.borrow_mut().push_back(runnable));
    // A panicking task must not unwind through the executor and take the core's other sessions
    // with it: the panic is caught, the task ends, and whoever awaits its handle gets the panic.
    let (runnable, task) = async_task::Builder::new()
        .propagate_panic(true)
        .spawn_local(move |()| future, schedule);
    runnable.schedule();
    task
}

/// Runs up to `budget` ready tasks; returns how many ran. The budget keeps a storm of ready tasks from
/// starving completion reaping.
pub fn run_ready(budget: usize) -> usize {
    let mut ran = 0;
    while ran < budget {
        // Pop first so the queue is not borrowed while the task runs (it may spawn or wake others).
        let next = READY.with(|q| q.borrow_mut().pop_front());
        match next {
            Some(runnable) => {
                runnable.run();
                ran += 1;
            }
            None => break,
        }
    }
    ran
}

/// Whether any task is ready to run.
pub fn has_ready() -> bool {
    READY.with(|q| !q.borrow().is_empty())
}

/// Drops every queued task without running it; used when a runtime shuts down.
pub fn clear() {
    let drained: Vec<Runnable> = READY.with(|q| q.borrow_mut().drain(..).collect());
    drop(drained);
}

/// Yields to the other ready tasks (and, once none are ready, to the completion loop) once.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
