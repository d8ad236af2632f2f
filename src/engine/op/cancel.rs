//! Async cancel: asks the kernel to cancel the op submitted with a given `user_data`. Carries no
//! pointers, so it owns nothing; its own completion is ignored (the cancelled op still completes, with
//! -ECANCELED or its real result, and its lifecycle handles that).

use io_uring::{opcode, squeue};

use crate::engine::runtime::IGNORE_KEY;

/// The SQE that cancels the op keyed `key`.
pub(crate) fn entry(key: usize) -> squeue::Entry {
    opcode::AsyncCancel::new(key as u64)
        .build()
        .user_data(IGNORE_KEY)
}
