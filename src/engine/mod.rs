//! Per-core io_uring runtime. This module (and only this module) holds `unsafe` io_uring code.
//!
//! One thread per core, pinned, each owning one ring set up with SINGLE_ISSUER|DEFER_TASKRUN, a slab of
//! in-flight operations keyed by `user_data`, a local executor of `!Send` tasks, a registered buffer
//! pool that also backs a provided-buffer ring, and a pipe pool for splice. Nothing here is shared
//! between cores, so the hot path takes no locks.
//!
//! The cancellation rule, which every op in [`op`] follows: an op future dropped before its completion
//! arrives hands the memory the kernel may still touch (buffers, paths, timespecs) to the runtime, which
//! keeps it alive until the completion for that `user_data` is reaped, then releases it (closing any file
//! descriptor the late completion produced, recycling any provided buffer it consumed).

pub mod blocking;
pub mod bufpool;
pub mod caps;
pub mod dir;
pub mod direct;
pub mod executor;
pub mod fd;
pub mod mapbuf;
pub mod net;
pub mod op;
pub mod pipe;
pub mod runtime;
pub mod sockaddr;
pub mod sync;
pub mod thread;
pub mod time;
pub mod timer;

pub use runtime::{block_on, spawn, Runtime, RuntimeConfig};

#[cfg(test)]
mod tests;
