//! Configuration: the TOML file and its validation, the policies, and the resolved
//! [`ServerConfig`] every core shares read-only.
//!
//! Owns: parsing, defaults and precedence (flag > env > file > default). May use: nothing of the
//! server (it is the bottom of `server/`), only `engine::RuntimeConfig`, and `tls` to load
//! certificates.

pub mod file;
pub mod policies;
pub mod s3;
pub mod server;
pub mod tls;

pub use file::{parse_mode_mask, parse_port_range, FileConfig, SettingsError};
pub use policies::{DirectIo, FsyncPolicy, LogFormat, Overwrite, Policies, StorageKind};
pub use s3::S3Settings;
pub use server::{DataPathKind, FsOps, ServerConfig};
pub use tls::{LoadedTls, TlsSettings};
