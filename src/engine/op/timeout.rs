//! Timeouts: a standalone TIMEOUT op (sleep) and the LINK_TIMEOUT SQE that bounds another op.
//! Ownership: the boxed timespec lives in the op data (or, for a link timeout, in the slab) until the
//! SQE completes; the kernel reads it when the SQE is submitted.

use std::time::Duration;

use io_uring::{opcode, squeue, types};

use super::{Cqe, Op, OpData};

pub struct Timeout {
    ts: Box<types::Timespec>,
}

// SAFETY: the timespec is a Box the op owns (heap), read by the kernel until completion.
unsafe impl OpData for Timeout {
    type Output = ();
    fn sqe(&mut self) -> squeue::Entry {
        opcode::Timeout::new(&*self.ts as *const types::Timespec).build()
    }
    fn complete(self, _cqe: Cqe) {}
}

/// Completes after `dur` (or earlier with -ECANCELED if cancelled; either way it resolves).
pub fn timeout(dur: Duration) -> Op<Timeout> {
    Op::new(Timeout {
        ts: Box::new(types::Timespec::from(dur)),
    })
}

/// A LINK_TIMEOUT SQE for `dur` and the timespec it points to, which must outlive its completion.
pub(crate) fn link_timeout(dur: Duration) -> (squeue::Entry, Box<types::Timespec>) {
    let ts = Box::new(types::Timespec::from(dur));
    let entry = opcode::LinkTimeout::new(&*ts as *const types::Timespec).build();
    (entry, ts)
}
