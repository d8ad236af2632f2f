//! Timers kept in user space, one ordered set per core. The completion loop sleeps in
//! `io_uring_enter` with a timeout equal to the earliest deadline, then wakes the expired timers.
//!
//! This replaces a TIMEOUT SQE per timer (plus an async cancel when the guarded operation wins, which
//! is the common case for idle and connect timeouts): a session's several timers per file cost a map
//! insert and remove each instead of four ring entries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Timers {
    map: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

thread_local! {
    static TIMERS: RefCell<Timers> = RefCell::new(Timers::default());
}

/// A future that completes at a deadline.
pub struct Sleep {
    deadline: Instant,
    key: Option<(Instant, u64)>,
}

impl Sleep {
    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            key: None,
        }
    }

    pub fn new(dur: Duration) -> Sleep {
        Sleep::until(Instant::now() + dur)
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            TIMERS.with(|t| t.borrow_mut().map.remove(&key));
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.unregister();
            return Poll::Ready(());
        }
        TIMERS.with(|t| {
            let mut t = t.borrow_mut();
            match this.key {
                Some(key) => {
                    if let Some(w) = t.map.get_mut(&key) {
                        if !w.will_wake(cx.waker()) {
                            *w = cx.waker().clone();
                        }
                        return;
                    }
                    // Fired meanwhile but not yet due by our clock read: register again.
                    t.map.insert(key, cx.waker().clone());
                }
                None => {
                    let key = (this.deadline, t.next_id);
                    t.next_id += 1;
                    t.map.insert(key, cx.waker().clone());
                    this.key = Some(key);
                }
            }
        });
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The earliest pending deadline on this core.
pub fn next_deadline() -> Option<Instant> {
    TIMERS.with(|t| t.borrow().map.keys().next().map(|k| k.0))
}

/// Wakes every timer due by `now`; returns how many.
pub fn fire_expired(now: Instant) -> usize {
    let mut due = Vec::new();
    TIMERS.with(|t| {
        let mut t = t.borrow_mut();
        while let Some(entry) = t.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
    });
    let n = due.len();
    for w in due {
        w.wake();
    }
    n
}

/// Timers registered on this core.
pub fn pending() -> usize {
    TIMERS.with(|t| t.borrow().map.len())
}
