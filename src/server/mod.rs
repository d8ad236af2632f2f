//! The FTP server: the I/O around the sans-IO protocol core, in one folder per concern. Dependencies
//! point down this list, never up, and never in a circle:
//!
//! - `start`: start-up, signals, the per-core accept loop (builds the `context`).
//! - `service`: running as a system service (switching to `run_as_user`, systemd readiness, root
//!   warnings); used by `start` and the binary, uses `auth`, `storage` and `config`.
//! - `session/`: one control connection's loop, login, ABOR/STAT during transfers.
//! - `transfer/`: data connections and passive listeners; the receive and send paths.
//! - `context`: the state shared by all cores and each core's own, handed to everything below.
//! - `storage/`: the storage seam and the local file system behind it (landing, durability).
//! - `auth/`: users and passwords, the login cache, admission limits.
//! - `observe/`: metrics and the xferlog.
//! - `config/`: the resolved configuration, the policies, the TOML file.

pub mod auth;
pub mod balancer;
pub mod config;
pub mod context;
pub mod observe;
pub mod service;
pub mod session;
pub mod start;
pub mod storage;
pub mod transfer;

pub use config::{DataPathKind, ServerConfig};
pub use start::{run, Started};
