//! ringest: an FTP bulk-ingest server on io_uring, thread-per-core.
//!
//! Layers, dependencies pointing down:
//! - [`server`]: the I/O around the protocol: sessions driving a [`proto::session::Session`],
//!   transfers, storage (behind one seam), users, metrics; one folder per concern.
//! - [`proto`]: sans-IO protocol core (parser, replies, session state machine, MODE B codec, paths).
//! - [`engine`]: per-core io_uring runtime; the only place with `unsafe` io_uring code.

pub mod engine;
pub mod proto;
pub mod server;
pub mod tls;
