//! The global cap on bytes buffered for the object store, as pure bookkeeping.
//!
//! Every part buffer is paid for here before it is filled and paid back when its UploadPart (or
//! PUT) has returned. An upload that cannot pay waits, and while it waits its data connection is
//! not read: TCP flow control then slows the client down, which is the back-pressure the issue
//! asks for, and the server's memory for S3 never exceeds the cap.
//!
//! Waiters are served first come, first served, and a waiter at the head blocks later ones even
//! if they would fit: otherwise a stream of small requests could starve a large part forever.
//! The engine wraps one `Budget` (shared by the cores, behind a lock) and wakes the upload named
//! by each grant that [`Budget::release`] or [`Budget::cancel`] returns.

use std::collections::VecDeque;

/// A request the budget can never grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a buffer of {asked} bytes exceeds the whole S3 memory budget of {cap} bytes")]
pub struct OverCap {
    pub asked: u64,
    pub cap: u64,
}

/// The answer to [`Budget::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The bytes are the caller's until it releases them.
    Granted,
    /// The caller is queued; a later `release` or `cancel` names it when the bytes are its own.
    Queued,
}

/// Bytes buffered against a cap, and who waits for some. `W` names a waiter (an upload).
#[derive(Debug)]
pub struct Budget<W> {
    cap: u64,
    used: u64,
    waiting: VecDeque<(W, u64)>,
}

impl<W: PartialEq + Clone> Budget<W> {
    pub fn new(cap: u64) -> Budget<W> {
        Budget {
            cap,
            used: 0,
            waiting: VecDeque::new(),
        }
    }

    /// Asks for `bytes` on behalf of `who`: granted now if they fit and no one waits ahead,
    /// otherwise queued.
    pub fn acquire(&mut self, who: W, bytes: u64) -> Result<Acquire, OverCap> {
        if bytes > self.cap {
            return Err(OverCap {
                asked: bytes,
                cap: self.cap,
            });
        }
        if self.waiting.is_empty() && self.used + bytes <= self.cap {
            self.used += bytes;
            Ok(Acquire::Granted)
        } else {
            self.waiting.push_back((who, bytes));
            Ok(Acquire::Queued)
        }
    }

    /// Gives back `bytes` granted earlier; returns the waiters granted by it, in queue order,
    /// each with the bytes now its own.
    pub fn release(&mut self, bytes: u64) -> Vec<(W, u64)> {
        assert!(
            bytes <= self.used,
            "releasing {bytes} of {} used",
            self.used
        );
        self.used -= bytes;
        self.grant_waiters()
    }

    /// `who` no longer waits (its upload was aborted or its connection cut). Returns the waiters
    /// this lets through: a large head waiter leaving can unblock smaller ones behind it.
    pub fn cancel(&mut self, who: &W) -> Vec<(W, u64)> {
        self.waiting.retain(|(w, _)| w != who);
        self.grant_waiters()
    }

    fn grant_waiters(&mut self) -> Vec<(W, u64)> {
        let mut granted = Vec::new();
        while let Some(&(_, bytes)) = self.waiting.front() {
            if self.used + bytes > self.cap {
                break;
            }
            self.used += bytes;
            granted.push(self.waiting.pop_front().expect("front exists"));
        }
        granted
    }

    /// Bytes granted and not yet released (the /metrics "bytes buffered" upper bound).
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Uploads waiting for buffer space (the /metrics back-pressure gauge).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grants_until_full_then_queues_in_order() {
        let mut b = Budget::new(10);
        assert_eq!(b.acquire(1, 6), Ok(Acquire::Granted));
        assert_eq!(b.acquire(2, 6), Ok(Acquire::Queued));
        // Fits, but 2 waits ahead of it.
        assert_eq!(b.acquire(3, 1), Ok(Acquire::Queued));
        assert_eq!(b.waiting(), 2);
        assert_eq!(b.release(6), vec![(2, 6), (3, 1)]);
        assert_eq!(b.used(), 7);
        assert_eq!(b.waiting(), 0);
    }

    #[test]
    fn cancelling_the_head_lets_the_others_through() {
        let mut b = Budget::new(10);
        b.acquire(1, 8).unwrap();
        b.acquire(2, 5).unwrap();
        b.acquire(3, 2).unwrap();
        assert_eq!(b.cancel(&2), vec![(3, 2)]);
        assert_eq!(b.used(), 10);
    }

    #[test]
    fn more_than_the_cap_is_refused() {
        let mut b = Budget::<u32>::new(10);
        assert_eq!(b.acquire(1, 11), Err(OverCap { asked: 11, cap: 10 }));
        assert_eq!(b.used(), 0);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Acquire(u64),
        ReleaseOne,
        CancelOne,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u64..=100).prop_map(Step::Acquire),
            Just(Step::ReleaseOne),
            Just(Step::CancelOne),
        ]
    }

    proptest! {
        /// Whatever the order of requests, releases and cancellations: the cap holds, the
        /// head waiter is granted as soon as it fits, grants keep queue order, and once every
        /// holder releases, nothing is used and no one waits.
        #[test]
        fn budget_is_safe_fair_and_live(steps in proptest::collection::vec(step(), 0..200)) {
            let cap = 100;
            let mut b = Budget::new(cap);
            let mut held: Vec<(u32, u64)> = Vec::new();
            let mut queued: Vec<(u32, u64)> = Vec::new();
            let mut next = 0u32;
            for s in steps {
                let granted = match s {
                    Step::Acquire(n) => {
                        next += 1;
                        match b.acquire(next, n).unwrap() {
                            Acquire::Granted => {
                                prop_assert!(queued.is_empty());
                                held.push((next, n));
                                vec![]
                            }
                            Acquire::Queued => {
                                queued.push((next, n));
                                vec![]
                            }
                        }
                    }
                    Step::ReleaseOne => match held.pop() {
                        Some((_, n)) => b.release(n),
                        None => vec![],
                    },
                    Step::CancelOne => match queued.first().cloned() {
                        Some((w, _)) => {
                            queued.remove(0);
                            b.cancel(&w)
                        }
                        None => vec![],
                    },
                };
                // Grants come off the front of the queue, in order.
                prop_assert!(granted.len() <= queued.len());
                prop_assert_eq!(&granted[..], &queued[..granted.len()]);
                queued.drain(..granted.len());
                held.extend(granted);
                let used: u64 = held.iter().map(|h| h.1).sum();
                prop_assert_eq!(b.used(), used);
                prop_assert!(used <= cap);
                prop_assert_eq!(b.waiting(), queued.len());
                // Liveness: the head waiter does not fit, or it would have been granted.
                if let Some(&(_, n)) = queued.first() {
                    prop_assert!(used + n > cap);
                }
            }
            while let Some((_, n)) = held.pop() {
                let granted = b.release(n);
                queued.drain(..granted.len());
                held.extend(granted);
            }
            prop_assert_eq!(b.used(), 0);
            prop_assert_eq!(b.waiting(), 0);
            prop_assert!(queued.is_empty());
        }
    }
}
