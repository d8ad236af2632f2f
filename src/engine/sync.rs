//! A core-local one-shot event (shutdown notices). No locks: it lives and is used on one core only.
//! Each waiter holds a [`Listener`] whose slot is freed when it is dropped, so sessions that come and
//! go never grow the waiter list.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

#[derive(Clone, Default)]
pub struct LocalEvent {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    set: Cell<bool>,
    waiters: RefCell<Slab<Option<Waker>>>,
}

/// One waiter's registration.
pub struct Listener {
    inner: Rc<Inner>,
    key: usize,
}

impl LocalEvent {
    pub fn new() -> LocalEvent {
        LocalEvent::default()
    }

    /// Sets the event and wakes every waiter.
    pub fn set(&self) {
        self.inner.set.set(true);
        let wakers: Vec<Waker> = self
            .inner
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }

    /// Registers a waiter.
    pub fn listen(&self) -> Listener {
        let key = self.inner.waiters.borrow_mut().insert(None);
        Listener {
            inner: self.inner.clone(),
            key,
        }
    }
}

impl Listener {
    /// Ready once the event is set.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.set.get() {
            return Poll::Ready(());
        }
        if let Some(slot) = self.inner.waiters.borrow_mut().get_mut(self.key) {
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    pub fn is_set(&self) -> bool {
        self.inner.set.get()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.inner.waiters.borrow_mut().try_remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_free_their_slots() {
        let e = LocalEvent::new();
        let a = e.listen();
        let b = e.listen();
        drop(a);
        assert_eq!(e.inner.waiters.borrow().len(), 1);
        drop(b);
        assert_eq!(e.inner.waiters.borrow().len(), 0);
        let c = e.listen();
        e.set();
        assert!(c.is_set());
    }
}
