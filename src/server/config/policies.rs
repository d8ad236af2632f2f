//! Policies: the admission, login, landing, logging and shutdown settings, with their defaults, and
//! the keyword enums the configuration file and flags spell as words. A leaf of `config/`: the file
//! parser and the resolved [`super::server::ServerConfig`] both build on it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// What to do when an upload names an existing file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace it atomically (the upload lands under a temporary name and is renamed over it).
    #[default]
    Replace,
    /// Refuse the upload with 553, so an ingest never clobbers data already delivered.
    Refuse,
}

/// When uploaded data is forced to stable storage before the 226 reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never: fastest; a crash may lose files already acknowledged.
    #[default]
    None,
    /// fsync each file before acknowledging it.
    File,
    /// Group the fsyncs of files completing together (syncfs-style batching), then acknowledge them.
    Batch,
}

/// Format of the `tracing` log on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

macro_rules! keyword_enum {
    ($ty:ty, $what:literal, $($name:literal => $v:expr),+) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($name => Ok($v),)+
                    other => Err(format!(
                        concat!("unknown ", $what, " {:?} (expected ", keyword_enum!(@list $($name),+), ")"),
                        other
                    )),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if *self == $v { return f.write_str($name); })+
                Ok(())
            }
        }
    };
    (@list $first:literal $(, $rest:literal)*) => {
        concat!("\"", $first, "\"" $(, ", \"", $rest, "\"")*)
    };
}

keyword_enum!(Overwrite, "overwrite policy", "replace" => Overwrite::Replace, "refuse" => Overwrite::Refuse);
/// When uploads bypass the page cache (O_DIRECT writes from the registered buffers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DirectIo {
    /// Once an upload has passed `direct_io_threshold` bytes: small files stay in the page cache
    /// (one buffered write is cheaper than the alignment work), large ones stop filling it.
    #[default]
    Auto,
    /// Every new upload from its first byte.
    On,
    /// Never: every write goes through the page cache.
    Off,
}

/// `storage`: where uploads land and listings come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StorageKind {
    /// The local file system under each user's root.
    #[default]
    Local,
    /// An S3 bucket, a key prefix per user (`s3_*` settings).
    S3,
}

keyword_enum!(StorageKind, "storage", "local" => StorageKind::Local, "s3" => StorageKind::S3);
keyword_enum!(DirectIo, "direct_io policy", "auto" => DirectIo::Auto, "on" => DirectIo::On, "off" => DirectIo::Off);
keyword_enum!(crate::proto::session::TlsMode, "tls policy", "off" => crate::proto::session::TlsMode::Off, "optional" => crate::proto::session::TlsMode::Optional, "required" => crate::proto::session::TlsMode::Required);

/// `proxy_protocol`: whether connections carry a PROXY header from a balancer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// No header is read; a header is just bytes (an unknown command).
    #[default]
    Off,
    /// Connections from `proxy_from` may start with a header; others must not (refused).
    Optional,
    /// Every connection must come from `proxy_from` with a header; anything else is refused.
    Required,
}

keyword_enum!(ProxyMode, "proxy_protocol", "off" => ProxyMode::Off, "optional" => ProxyMode::Optional, "required" => ProxyMode::Required);

/// `tls_data`: whether data connections must be protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsData {
    #[default]
    Optional,
    Required,
}

keyword_enum!(TlsData, "tls_data policy", "optional" => TlsData::Optional, "required" => TlsData::Required);
keyword_enum!(FsyncPolicy, "fsync policy", "none" => FsyncPolicy::None, "file" => FsyncPolicy::File, "batch" => FsyncPolicy::Batch);
keyword_enum!(LogFormat, "log format", "human" => LogFormat::Human, "json" => LogFormat::Json);

/// Settings that [`ServerConfig`](super::server::ServerConfig) does not have yet, with their defaults; meant to be embedded in
/// it (or passed alongside) by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policies {
    /// The users file; `None` serves the single CLI user.
    pub users_file: Option<PathBuf>,
    /// Control connections open at once, server-wide; more are refused with 421.
    pub max_sessions: usize,
    /// Control connections open at once from one client IP; 0 means no limit (the default, as in
    /// vsftpd: one NAT or a benchmark client may hold hundreds of sessions legitimately).
    pub max_sessions_per_ip: usize,
    /// Time allowed from connect to a successful login.
    pub login_timeout: Duration,
    pub overwrite: Overwrite,
    pub fsync: FsyncPolicy,
    pub log_format: LogFormat,
    /// Where to append the xferlog; `None` disables it.
    pub xferlog: Option<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint; `None` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// How long SIGTERM waits for running transfers before closing them.
    pub shutdown_grace: Duration,
    /// Delay before answering a failed login (slows guessing, costs the server nothing).
    pub login_fail_delay: Duration,
    /// How long a successful login lets the same name and password skip the hash; zero disables.
    pub login_cache: Duration,
    /// Failed logins per minute per client IP before further attempts are refused; 0 disables.
    pub max_login_failures_per_ip: u32,
    /// The system user the server switches to once its listeners are bound and its roots and logs
    /// are open (so it can start as root to bind port 21); `None` keeps the starting user.
    pub run_as_user: Option<String>,
    /// The group to switch to; by default the user's primary group.
    pub run_as_group: Option<String>,
    /// Password checks that may run at once for one client IP (each costs a slow hash); further
    /// simultaneous attempts wait for a slot (up to the login timeout, then 421). 0: no cap beyond
    /// the failed-login budget, which always bounds the checks in flight.
    pub max_login_checks_per_ip: u32,
}

impl Default for Policies {
    fn default() -> Self {
        Policies {
            users_file: None,
            max_sessions: 20_000,
            max_sessions_per_ip: 0,
            login_timeout: Duration::from_secs(30),
            overwrite: Overwrite::Replace,
            fsync: FsyncPolicy::None,
            log_format: LogFormat::Human,
            xferlog: None,
            metrics_listen: None,
            shutdown_grace: Duration::from_secs(30),
            login_fail_delay: Duration::from_millis(1000),
            login_cache: Duration::from_secs(300),
            max_login_failures_per_ip: 10,
            run_as_user: None,
            run_as_group: None,
            max_login_checks_per_ip: 4,
        }
    }
}
