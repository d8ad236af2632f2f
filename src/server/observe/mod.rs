//! Observability: Prometheus metrics (per-core counters and the `/metrics` endpoint) and the
//! xferlog transfer log.
//!
//! Owns: counting and logging what happened. May use: the engine (the HTTP endpoint runs on a core's
//! ring); nothing else of the server, so any layer can report into it.

pub mod labels;
pub mod metrics;
pub mod xferlog;

pub use labels::{Direction, Mode};
