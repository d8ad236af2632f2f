//! Sessions: one per control connection, on the core that accepted it. Frames commands, drives the
//! sans-IO `proto::session::Session`, performs its actions, and keeps reading the control connection
//! while a transfer runs (ABOR, STAT, a vanished client).
//!
//! Owns: the control connection and a session's state between transfers (its passive listener,
//! kept MODE B connection, storage, TLS). May use: `transfer`, `storage`, `auth`, `observe`,
//! `context`, `config`, `balancer` (the PROXY header), `crate::tls`; nothing above it but `start`,
//! which spawns it.

pub mod account;
pub mod io;
pub mod login;
pub mod serve;
pub mod watch;

pub use serve::serve;
