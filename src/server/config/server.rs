//! The resolved server configuration: what every core reads at start-up and then shares read-only.
//! Built from defaults, the file ([`super::file`]), the environment and flags by the binary; the
//! server itself never parses anything.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::RuntimeConfig;

use super::policies::{DirectIo, Policies};

/// How MODE S binary uploads move from the data socket into the file (MODE B always decodes from
/// registered buffers; TYPE A always converts in user space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPathKind {
    /// `Splice` with inline file-system calls, `Fixed` with `fs_ops = ring`. Measured here (see
    /// README): with direct system calls splice moves a 2 GiB upload ~25% faster at ~40% less server
    /// CPU per GB (one copy instead of two) and costs the same for 4 KiB files; through the ring each
    /// splice is an io-wq hand-off, and `Fixed` is faster.
    Auto,
    /// Multishot recv into registered buffers, then WRITE_FIXED at explicit offsets.
    Fixed,
    /// splice socket -> pipe -> file.
    Splice,
}

impl DataPathKind {
    /// The path uploads take with `fs_ops`: `Auto` becomes `Splice` with inline file-system calls
    /// and `Fixed` through the ring; an explicit choice stays. Decided once, when a core starts.
    pub fn resolve(self, fs_ops: FsOps) -> DataPathKind {
        match (self, fs_ops) {
            (DataPathKind::Auto, FsOps::Inline) => DataPathKind::Splice,
            (DataPathKind::Auto, FsOps::Ring) => DataPathKind::Fixed,
            (chosen, _) => chosen,
        }
    }
}

impl std::str::FromStr for DataPathKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DataPathKind::Auto),
            "fixed" => Ok(DataPathKind::Fixed),
            "splice" => Ok(DataPathKind::Splice),
            other => Err(format!(
                "unknown data path {other:?} (expected \"auto\", \"fixed\" or \"splice\")"
            )),
        }
    }
}

/// Where the file-system operations of an upload run (see `engine::direct`). `Inline` is the default
/// because it measured faster and cheaper here: 4 KiB MODE B uploads ~25 instead of ~33 us of server
/// CPU per file, a 1 GiB upload ~0.44 instead of ~0.52 CPU-s/GB. `Ring` is the choice when the core
/// must never wait on the file system (slow or network storage, heavy writeback throttling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsOps {
    /// Through the ring (io_uring punts creates, links, renames and buffered writes to io-wq
    /// workers): the core thread never blocks on the file system.
    Ring,
    /// As direct system calls on the core thread: no worker hand-off per operation; a slow file
    /// system stalls the core's sessions meanwhile.
    Inline,
}

impl std::str::FromStr for FsOps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ring" => Ok(FsOps::Ring),
            "inline" => Ok(FsOps::Inline),
            other => Err(format!(
                "unknown fs_ops {other:?} (expected \"ring\" or \"inline\")"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The single user's root directory (their `/`).
    pub root: PathBuf,
    pub user: String,
    pub password: String,
    /// Core threads (one per allowed CPU by default).
    pub threads: usize,
    /// Passive port range, inclusive; each core starts its port search in its own slice of it.
    pub passive_ports: (u16, u16),
    /// Address advertised in PASV replies; by default the control connection's local address.
    pub passive_address: Option<IpAddr>,
    pub data_path: DataPathKind,
    pub fs_ops: FsOps,
    /// When uploads switch to O_DIRECT writes (see `transfer::direct`).
    pub direct_io: DirectIo,
    /// Bytes after which `direct_io = auto` switches an upload to direct writes.
    pub direct_io_threshold: u64,
    pub runtime: RuntimeConfig,
    pub max_line: usize,
    /// Idle control connection timeout (not counted while a transfer runs).
    pub idle_timeout: Duration,
    /// How long a data connection may take to open, or stall mid-transfer.
    pub data_timeout: Duration,
    /// How long a reply may wait for a client that reads nothing on its control connection (its
    /// receive window stays closed) before the session is closed.
    pub control_send_timeout: Duration,
    pub listen_backlog: i32,
    /// Entries one LIST/NLST/MLSD/STAT returns at most (matching entries, for a wildcard): bounds
    /// the memory and time a listing of a huge directory, or a `*` in it, can cost.
    pub max_list_entries: usize,
    /// SITE CHMOD sets `mode & chmod_mask`; 0 turns SITE CHMOD off.
    pub chmod_mask: u32,
    /// A stream-mode binary upload announced with ALLO that ends short of the announced size is
    /// refused with 426 and nothing lands (a cut connection looks like a complete file otherwise).
    pub allo_check: bool,
    /// Admission, login, landing, logging and shutdown policies.
    pub policies: Policies,
    /// FTPS.
    pub tls: super::tls::TlsSettings,
    /// Connections through a layer-4 balancer (PROXY protocol).
    pub proxy: ProxySettings,
    /// Digests computed inline while uploads arrive and stored with the file (empty: none, and
    /// binary uploads keep the splice path).
    pub checksums: Vec<crate::proto::checksum::Algo>,
    /// Where uploads land.
    pub storage: super::policies::StorageKind,
    /// The object store, for `storage = s3`.
    pub s3: super::s3::S3Settings,
}

/// The PROXY protocol: who may send a header, and how long one may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    pub mode: super::policies::ProxyMode,
    /// The balancers' addresses; a header from anywhere else is refused.
    pub from: Vec<crate::proto::proxy::Cidr>,
    /// A connection from a balancer that sends no complete header within this is closed.
    pub timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            mode: super::policies::ProxyMode::Off,
            from: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// The embedded default: a local directory on loopback.
    pub fn default_with(user: String, password: String) -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:2121"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 2121))),
            root: PathBuf::from("ringest-data"),
            user,
            password,
            threads: 0,
            passive_ports: (40000, 47999),
            passive_address: None,
            data_path: DataPathKind::Auto,
            fs_ops: FsOps::Inline,
            direct_io: DirectIo::Auto,
            direct_io_threshold: 8 << 20,
            runtime: RuntimeConfig::default(),
            max_line: 4096,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(30),
            control_send_timeout: Duration::from_secs(60),
            listen_backlog: 4096,
            max_list_entries: 100_000,
            chmod_mask: 0o777,
            allo_check: true,
            policies: Policies::default(),
            tls: super::tls::TlsSettings::default(),
            proxy: ProxySettings::default(),
            checksums: Vec::new(),
            storage: super::policies::StorageKind::Local,
            s3: super::s3::S3Settings::default(),
        }
    }

    /// The passive ports of core `core` out of `cores`: equal contiguous slices, the last one taking
    /// the remainder. A range smaller than the core count gives some cores an empty slice.
    pub fn passive_slice(&self, core: usize, cores: usize) -> (u16, u16) {
        let (lo, hi) = self.passive_ports;
        let total = usize::from(hi.saturating_sub(lo)) + 1;
        let per = (total / cores.max(1)).max(1);
        let start = usize::from(lo) + per * core;
        let end = if core + 1 == cores {
            usize::from(hi)
        } else {
            (start + per - 1).min(usize::from(hi))
        };
        if start > usize::from(hi) {
            return (1, 0);
        }
        (start as u16, end as u16)
    }
}
