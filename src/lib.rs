//! ringest: an FTP bulk-ingest server on io_uring, thread-per-core.
//!
//! Layers, dependencies pointing down:
//! - [`server`]: sessions driving a [`proto::Session`] with the engine's I/O, data channels, landing.
//! - [`proto`]: sans-IO protocol core (parser, replies, session state machine, MODE B codec, paths).
//! - [`engine`]: per-core io_uring runtime; the only place with `unsafe` io_uring code.

pub mod engine;
pub mod proto;
pub mod server;
