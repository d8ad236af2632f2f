//! The FTP server: per-core accept loops, sessions driving [`crate::proto::session::Session`] with the
//! engine's I/O, data connections, and the landing of uploaded files.

pub mod config;
pub mod control;
pub mod core;
pub mod data;
pub mod durability;
pub mod fsops;
pub mod landing;
pub mod limits;
pub mod login_cache;
pub mod metrics;
pub mod settings;
pub mod store;
pub mod transfer;
pub mod users;
pub mod xferlog;

pub use config::{DataPathKind, ServerConfig};
pub use core::{run, Started};
