//! The TOML configuration file (`ringest serve --config ringest.toml`).
//!
//! Every key is optional; a key that is absent leaves the built-in default (or the value from the
//! environment or a flag, which take precedence: flag > env > file > default). Unknown keys are
//! errors, so a misspelt key fails start-up instead of being silently ignored. Values are checked
//! when the file is loaded and errors name the file, the key and the problem, e.g.
//! `ringest.toml: key "passive_ports": expected LOW-HIGH with 0 < LOW <= HIGH, got "5-1"`.
//!
//! ```toml
//! listen = "0.0.0.0:21"
//! root = "/srv/ftp"                 # relative paths resolve against this file's directory
//! users_file = "users.toml"
//! threads = 0                       # 0: one per CPU
//! passive_ports = "40000-47999"
//! passive_address = "203.0.113.7"
//! data_path = "auto"                # or "fixed", "splice"
//! fs_ops = "ring"                    # or "inline"
//! direct_io = "auto"                # or "on", "off": O_DIRECT writes for large uploads
//! direct_io_threshold = 8388608     # bytes after which "auto" switches an upload to direct writes
//! buffers = 512
//! buffer_size = 65536
//! idle_timeout = 300                # seconds
//! data_timeout = 30
//! control_send_timeout = 60      # a client that reads no replies for this long is disconnected
//! login_timeout = 30
//! max_line = 4096
//! max_sessions = 10000
//! max_sessions_per_ip = 0      # 0 = unlimited (the default; loopback benchmarks come from one address)
//! overwrite = "replace"             # or "refuse"
//! fsync = "none"                    # or "file", "batch"
//! log_format = "human"              # or "json"
//! xferlog = "/var/log/ringest/xferlog"
//! metrics_listen = "127.0.0.1:9121"
//! shutdown_grace = 30
//! login_fail_delay_ms = 1000
//! login_cache_secs = 300            # repeat logins skip the hash for this long; 0: hash every time
//! max_login_failures_per_ip = 10    # per minute; 0: unlimited
//! max_list_entries = 100000         # entries one LIST/NLST/MLSD returns at most (wildcards too)
//! chmod_mask = "0777"               # SITE CHMOD sets mode & mask (octal); "0" turns it off
//! allo_check = true                 # 426 and nothing stored when a MODE S upload ends short of ALLO
//! run_as_user = "ftp"               # drop root after binding the listeners; default: keep the user
//! run_as_group = "ftp"              # default: run_as_user's primary group
//! max_login_checks_per_ip = 4       # password checks at once per client IP (more wait); 0: no cap
//! tls = "optional"                  # FTPS: "off", "optional" (AUTH TLS accepted) or "required"
//! tls_data = "optional"             # or "required": data connections must be protected (PROT P)
//! tls_data_resumption = true        # a protected data connection must resume the control session
//! tls_cert = "/etc/ringest/cert.pem"  # PEM chain; default: a self-signed pair beside the root
//! tls_key = "/etc/ringest/key.pem"
//! implicit_tls_listen = "0.0.0.0:990" # implicit FTPS (TLS from the first byte) on a second port
//! proxy_protocol = "off"            # "optional", "required": PROXY v1/v2 headers from balancers
//! proxy_from = ["10.0.0.0/8"]       # the balancers' addresses; a header from anyone else is refused
//! proxy_timeout = 5                 # seconds a balancer's connection may take to send its header
//! checksums = ["sha256", "crc32c"]  # digests computed while uploads arrive (default: none);
//!                                   # also crc32, adler32, md5, sha1, sha512
//! storage = "local"                 # or "s3": uploads land in a bucket (docs/s3.md)
//! s3_endpoint = "http://127.0.0.1:3900"
//! s3_region = "garage"
//! s3_bucket = "ingest"
//! s3_prefix = "{user}/"             # each user's keys start with this
//! s3_credentials_file = "/etc/ringest/s3.key"  # key id, then secret; default: RINGEST_S3_KEY_ID/_SECRET or AWS_* env
//! s3_part_size = 8388608            # first multipart parts (5 MiB to 5 GiB); smaller files are one PUT
//! s3_memory_cap = 1073741824        # bytes all uploads may buffer; past it uploads wait (back-pressure)
//! s3_timeout = 30                   # seconds a store request may take with retries before 451
//! s3_threads = 8                    # threads sending store requests
//! s3_socket_buffer = 1048576        # SO_RCVBUF of upload data connections; 0: kernel autotuning
//! ```
//!
//! Fields that [`ServerConfig`] has are applied by [`FileConfig::apply`]; the others land in
//! [`Policies`] through [`FileConfig::apply_policies`].

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::policies::{
    DirectIo, FsyncPolicy, LogFormat, Overwrite, Policies, ProxyMode, StorageKind, TlsData,
};
use super::server::{DataPathKind, FsOps, ServerConfig};
use crate::proto::checksum;
use crate::proto::proxy::Cidr;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A key with a wrong value or type, or an unknown key.
    #[error("{file}: key {key:?}: {message}")]
    Key {
        file: String,
        key: String,
        message: String,
    },
    /// Not valid TOML (no single key to blame); `message` is toml's, with line and column.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
}

/// The configuration file as written: every key optional, unknown keys refused.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub root: Option<PathBuf>,
    pub users_file: Option<PathBuf>,
    pub threads: Option<usize>,
    pub passive_ports: Option<String>,
    pub passive_address: Option<String>,
    pub data_path: Option<String>,
    pub fs_ops: Option<String>,
    pub direct_io: Option<String>,
    pub direct_io_threshold: Option<u64>,
    pub buffers: Option<u32>,
    pub buffer_size: Option<usize>,
    /// Seconds.
    pub idle_timeout: Option<u64>,
    /// Seconds.
    pub data_timeout: Option<u64>,
    /// Seconds.
    pub control_send_timeout: Option<u64>,
    /// Seconds.
    pub login_timeout: Option<u64>,
    pub max_line: Option<usize>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub overwrite: Option<String>,
    pub fsync: Option<String>,
    pub log_format: Option<String>,
    pub xferlog: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    /// Seconds.
    pub shutdown_grace: Option<u64>,
    pub login_fail_delay_ms: Option<u64>,
    /// Seconds a successful login is remembered (see `login_cache`); 0 disables.
    pub login_cache_secs: Option<u64>,
    /// Failed logins per minute per client IP before further attempts are refused; 0 disables.
    pub max_login_failures_per_ip: Option<u32>,
    pub max_list_entries: Option<usize>,
    /// Octal, as a string ("0755"): TOML has no octal literal a reader would not misread.
    pub chmod_mask: Option<String>,
    pub allo_check: Option<bool>,
    pub run_as_user: Option<String>,
    pub run_as_group: Option<String>,
    /// Password verifications running at once per client IP; 0 disables.
    pub max_login_checks_per_ip: Option<u32>,
    pub tls: Option<String>,
    pub tls_data: Option<String>,
    pub tls_data_resumption: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub implicit_tls_listen: Option<String>,
    pub proxy_protocol: Option<String>,
    pub proxy_from: Option<Vec<String>>,
    /// Seconds.
    pub proxy_timeout: Option<u64>,
    /// Algorithm names (`proto::checksum::Algo::parse`).
    pub checksums: Option<Vec<String>>,
    pub storage: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub s3_credentials_file: Option<PathBuf>,
    pub s3_part_size: Option<u64>,
    pub s3_memory_cap: Option<u64>,
    /// Seconds.
    pub s3_timeout: Option<u64>,
    pub s3_threads: Option<usize>,
    pub s3_socket_buffer: Option<usize>,
}

/// Longest timeout accepted, in seconds (a year): anything longer is a typo, and a huge value
/// would overflow `Instant` arithmetic.
const MAX_SECS: u64 = 365 * 24 * 3600;

/// Parses a passive port range `LOW-HIGH` (inclusive, `0 < LOW <= HIGH`).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("expected LOW-HIGH with 0 < LOW <= HIGH, got {s:?}");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("expected IP:PORT (e.g. \"0.0.0.0:21\" or \"[::]:21\"), got {s:?}"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("expected an IP address, got {s:?}"))?;
    if ip.is_unspecified() {
        return Err(format!(
            "must be an address clients can connect to, got {s:?}"
        ));
    }
    Ok(ip)
}

fn check_range<T: PartialOrd + fmt::Display>(v: T, lo: T, hi: T) -> Result<(), String> {
    if v < lo || v > hi {
        Err(format!("must be between {lo} and {hi}, got {v}"))
    } else {
        Ok(())
    }
}

/// Parses an octal permission mask such as `"0755"` (at most `07777`).
pub fn parse_mode_mask(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let bad = || format!("expected an octal mode between \"0\" and \"7777\", got {s:?}");
    if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let v = u32::from_str_radix(t, 8).map_err(|_| bad())?;
    if v > 0o7777 {
        return Err(bad());
    }
    Ok(v)
}

/// A user or group name as `getpwnam`/`getgrnam` take it.
fn check_account_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control() || c == ' ' || c == ':') {
        return Err(format!("expected a user or group name, got {s:?}"));
    }
    Ok(())
}

fn check_path(p: &Path) -> Result<(), String> {
    if p.as_os_str().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(())
    }
}

impl FileConfig {
    /// Reads, parses and validates the file at `path`. Relative paths in it (`root`, `users_file`,
    /// `xferlog`) are resolved against the file's directory, so the file means the same thing
    /// whatever directory the server is started from.
    pub fn load(path: impl AsRef<Path>) -> Result<FileConfig, SettingsError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse_named(&text, &path.display().to_string())?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        for p in [
            &mut cfg.root,
            &mut cfg.users_file,
            &mut cfg.xferlog,
            &mut cfg.tls_cert,
            &mut cfg.tls_key,
            &mut cfg.s3_credentials_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses and validates configuration text; relative paths stay as written.
    pub fn parse(text: &str) -> Result<FileConfig, SettingsError> {
        Self::parse_named(text, "config file")
    }

    fn parse_named(text: &str, file: &str) -> Result<FileConfig, SettingsError> {
        let cfg: FileConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        cfg.validate()
            .map_err(|(key, message)| SettingsError::Key {
                file: file.to_owned(),
                key: key.to_owned(),
                message,
            })?;
        Ok(cfg)
    }

    /// Checks every value that is set; the error is the offending key and what is wrong with it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        fn key<T>(k: &'static str, r: Result<T, String>) -> Result<(), (&'static str, String)> {
            r.map(drop).map_err(|m| (k, m))
        }
        if let Some(v) = &self.listen {
            key("listen", parse_addr(v))?;
        }
        if let Some(v) = &self.root {
            key("root", check_path(v))?;
        }
        if let Some(v) = &self.users_file {
            key("users_file", check_path(v))?;
        }
        if let Some(v) = self.threads {
            key("threads", check_range(v, 0, 1024))?;
        }
        if let Some(v) = &self.passive_ports {
            key("passive_ports", parse_port_range(v))?;
        }
        if let Some(v) = &self.passive_address {
            key("passive_address", parse_ip(v))?;
        }
        if let Some(v) = &self.direct_io {
            key("direct_io", v.parse::<DirectIo>())?;
        }
        if let Some(v) = &self.tls {
            key("tls", v.parse::<crate::proto::session::TlsMode>())?;
        }
        if let Some(v) = &self.tls_data {
            key("tls_data", v.parse::<TlsData>())?;
        }
        if let Some(v) = &self.proxy_protocol {
            key("proxy_protocol", v.parse::<ProxyMode>())?;
        }
        if let Some(list) = &self.proxy_from {
            for v in list {
                key("proxy_from", v.parse::<Cidr>())?;
            }
        }
        if let Some(v) = self.proxy_timeout {
            key("proxy_timeout", check_range(v, 1, 3600))?;
        }
        if let Some(list) = &self.checksums {
            key(
                "checksums",
                checksum::parse_list(list).map_err(|e| e.to_string()),
            )?;
        }
        if let Some(v) = &self.storage {
            key("storage", v.parse::<StorageKind>())?;
        }
        if let Some(v) = self.s3_part_size {
            key("s3_part_size", check_range(v, 5 << 20, 5 << 30))?;
        }
        if let Some(v) = self.s3_memory_cap {
            key("s3_memory_cap", check_range(v, 10 << 20, 1 << 50))?;
        }
        if let Some(v) = self.s3_timeout {
            key("s3_timeout", check_range(v, 1, 3600))?;
        }
        if let Some(v) = self.s3_threads {
            key("s3_threads", check_range(v, 1, 256))?;
        }
        if let Some(v) = self.s3_socket_buffer {
            key("s3_socket_buffer", check_range(v, 0, 1 << 30))?;
        }
        if let Some(v) = &self.s3_credentials_file {
            key("s3_credentials_file", check_path(v))?;
        }
        if let Some(v) = &self.tls_cert {
            key("tls_cert", check_path(v))?;
        }
        if let Some(v) = &self.tls_key {
            key("tls_key", check_path(v))?;
        }
        if let Some(v) = &self.implicit_tls_listen {
            key(
                "implicit_tls_listen",
                v.parse::<SocketAddr>().map_err(|e| format!("{e}: {v:?}")),
            )?;
        }
        if let Some(v) = self.direct_io_threshold {
            key("direct_io_threshold", check_range(v, 0, 1 << 40))?;
        }
        if let Some(v) = &self.fs_ops {
            key("fs_ops", v.parse::<FsOps>())?;
        }
        if let Some(v) = &self.data_path {
            key("data_path", v.parse::<DataPathKind>())?;
        }
        if let Some(v) = self.buffers {
            // A provided-buffer ring holds at most 32768 entries.
            key("buffers", check_range(v, 1, 32768))?;
        }
        if let Some(v) = self.buffer_size {
            key("buffer_size", check_range(v, 512, 16 << 20))?;
        }
        for (k, v) in [
            ("idle_timeout", self.idle_timeout),
            ("data_timeout", self.data_timeout),
            ("control_send_timeout", self.control_send_timeout),
            ("login_timeout", self.login_timeout),
        ] {
            if let Some(v) = v {
                key(k, check_range(v, 1, MAX_SECS))?;
            }
        }
        if let Some(v) = self.shutdown_grace {
            key("shutdown_grace", check_range(v, 0, MAX_SECS))?;
        }
        if let Some(v) = self.max_line {
            key("max_line", check_range(v, 128, 1 << 20))?;
        }
        if let Some(v) = self.max_sessions {
            key("max_sessions", check_range(v, 1, 10_000_000))?;
        }
        if let Some(v) = self.max_sessions_per_ip {
            key("max_sessions_per_ip", check_range(v, 0, 10_000_000))?;
        }
        if let Some(v) = &self.overwrite {
            key("overwrite", v.parse::<Overwrite>())?;
        }
        if let Some(v) = &self.fsync {
            key("fsync", v.parse::<FsyncPolicy>())?;
        }
        if let Some(v) = &self.log_format {
            key("log_format", v.parse::<LogFormat>())?;
        }
        if let Some(v) = &self.xferlog {
            key("xferlog", check_path(v))?;
        }
        if let Some(v) = &self.metrics_listen {
            key("metrics_listen", parse_addr(v))?;
        }
        if let Some(v) = self.login_fail_delay_ms {
            key("login_fail_delay_ms", check_range(v, 0, 60_000))?;
        }
        if let Some(v) = self.login_cache_secs {
            key("login_cache_secs", check_range(v, 0, 86_400))?;
        }
        if let Some(v) = self.max_list_entries {
            key("max_list_entries", check_range(v, 1, 100_000_000))?;
        }
        if let Some(v) = &self.chmod_mask {
            key("chmod_mask", parse_mode_mask(v))?;
        }
        if let Some(v) = &self.run_as_user {
            key("run_as_user", check_account_name(v))?;
        }
        if let Some(v) = &self.run_as_group {
            key("run_as_group", check_account_name(v))?;
        }
        Ok(())
    }

    /// Overwrites the fields of `cfg` that this file sets (only those `ServerConfig` has; see
    /// [`apply_policies`](Self::apply_policies) for the rest). Values were checked by `validate`,
    /// which `load`/`parse` ran; an invalid value (a hand-built `FileConfig`) is skipped.
    pub fn apply(&self, cfg: &mut ServerConfig) {
        if let Some(a) = self.listen.as_deref().and_then(|s| parse_addr(s).ok()) {
            cfg.listen = a;
        }
        if let Some(r) = &self.root {
            cfg.root = r.clone();
        }
        if let Some(t) = self.threads {
            cfg.threads = t;
        }
        if let Some(r) = self
            .passive_ports
            .as_deref()
            .and_then(|s| parse_port_range(s).ok())
        {
            cfg.passive_ports = r;
        }
        if let Some(ip) = self
            .passive_address
            .as_deref()
            .and_then(|s| parse_ip(s).ok())
        {
            cfg.passive_address = Some(ip);
        }
        if let Some(d) = self.data_path.as_deref().and_then(|s| s.parse().ok()) {
            cfg.data_path = d;
        }
        if let Some(d) = self.direct_io.as_deref().and_then(|s| s.parse().ok()) {
            cfg.direct_io = d;
        }
        if let Some(t) = self.direct_io_threshold {
            cfg.direct_io_threshold = t;
        }
        if let Some(d) = self.fs_ops.as_deref().and_then(|s| s.parse().ok()) {
            cfg.fs_ops = d;
        }
        if let Some(b) = self.buffers {
            cfg.runtime.buffers = b;
        }
        if let Some(b) = self.buffer_size {
            cfg.runtime.buffer_size = b;
        }
        if let Some(s) = self.idle_timeout {
            cfg.idle_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.data_timeout {
            cfg.data_timeout = Duration::from_secs(s);
        }
        if let Some(s) = self.control_send_timeout {
            cfg.control_send_timeout = Duration::from_secs(s);
        }
        if let Some(m) = self.max_line {
            cfg.max_line = m;
        }
        if let Some(v) = self.max_list_entries {
            cfg.max_list_entries = v;
        }
        if let Some(v) = self
            .chmod_mask
            .as_deref()
            .and_then(|s| parse_mode_mask(s).ok())
        {
            cfg.chmod_mask = v;
        }
        if let Some(v) = self.allo_check {
            cfg.allo_check = v;
        }
        if let Some(v) = self.tls.as_deref().and_then(|s| s.parse().ok()) {
            cfg.tls.mode = v;
        }
        if let Some(v) = self
            .tls_data
            .as_deref()
            .and_then(|s| s.parse::<TlsData>().ok())
        {
            cfg.tls.data_required = v == TlsData::Required;
        }
        if let Some(v) = self.tls_data_resumption {
            cfg.tls.data_resumption = v;
        }
        if let Some(v) = self.proxy_protocol.as_deref().and_then(|s| s.parse().ok()) {
            cfg.proxy.mode = v;
        }
        if let Some(list) = &self.proxy_from {
            cfg.proxy.from = list.iter().filter_map(|s| s.parse().ok()).collect();
        }
        if let Some(v) = self.proxy_timeout {
            cfg.proxy.timeout = Duration::from_secs(v);
        }
        if let Some(v) = self
            .checksums
            .as_deref()
            .and_then(|l| checksum::parse_list(l).ok())
        {
            cfg.checksums = v;
        }
        if let Some(v) = self.storage.as_deref().and_then(|s| s.parse().ok()) {
            cfg.storage = v;
        }
        let s3 = &mut cfg.s3;
        for (from, to) in [
            (&self.s3_endpoint, &mut s3.endpoint),
            (&self.s3_region, &mut s3.region),
            (&self.s3_bucket, &mut s3.bucket),
            (&self.s3_prefix, &mut s3.prefix),
        ] {
            if let Some(v) = from {
                *to = v.clone();
            }
        }
        if let Some(v) = &self.s3_credentials_file {
            s3.credentials_file = Some(v.clone());
        }
        if let Some(v) = self.s3_part_size {
            s3.part_size = v;
        }
        if let Some(v) = self.s3_memory_cap {
            s3.memory_cap = v;
        }
        if let Some(v) = self.s3_timeout {
            s3.timeout = Duration::from_secs(v);
        }
        if let Some(v) = self.s3_threads {
            s3.threads = v;
        }
        if let Some(v) = self.s3_socket_buffer {
            s3.socket_buffer = v;
        }
        if let Some(v) = &self.tls_cert {
            cfg.tls.cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            cfg.tls.key = Some(v.clone());
        }
        if let Some(v) = self
            .implicit_tls_listen
            .as_deref()
            .and_then(|s| s.parse().ok())
        {
            cfg.tls.implicit_listen = Some(v);
        }
    }

    /// Overwrites the fields of `p` that this file sets.
    pub fn apply_policies(&self, p: &mut Policies) {
        if let Some(u) = &self.users_file {
            p.users_file = Some(u.clone());
        }
        if let Some(v) = self.max_sessions {
            p.max_sessions = v;
        }
        if let Some(v) = self.max_sessions_per_ip {
            p.max_sessions_per_ip = v;
        }
        if let Some(v) = self.login_timeout {
            p.login_timeout = Duration::from_secs(v);
        }
        if let Some(v) = self.overwrite.as_deref().and_then(|s| s.parse().ok()) {
            p.overwrite = v;
        }
        if let Some(v) = self.fsync.as_deref().and_then(|s| s.parse().ok()) {
            p.fsync = v;
        }
        if let Some(v) = self.log_format.as_deref().and_then(|s| s.parse().ok()) {
            p.log_format = v;
        }
        if let Some(v) = &self.xferlog {
            p.xferlog = Some(v.clone());
        }
        if let Some(v) = self
            .metrics_listen
            .as_deref()
            .and_then(|s| parse_addr(s).ok())
        {
            p.metrics_listen = Some(v);
        }
        if let Some(v) = self.shutdown_grace {
            p.shutdown_grace = Duration::from_secs(v);
        }
        if let Some(v) = self.login_fail_delay_ms {
            p.login_fail_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.login_cache_secs {
            p.login_cache = Duration::from_secs(v);
        }
        if let Some(v) = self.max_login_failures_per_ip {
            p.max_login_failures_per_ip = v;
        }
        if let Some(v) = &self.run_as_user {
            p.run_as_user = Some(v.clone());
        }
        if let Some(v) = &self.run_as_group {
            p.run_as_group = Some(v.clone());
        }
        if let Some(v) = self.max_login_checks_per_ip {
            p.max_login_checks_per_ip = v;
        }
    }

    /// The [`Policies`] this file gives, defaults filled in.
    pub fn policies(&self) -> Policies {
        let mut p = Policies::default();
        self.apply_policies(&mut p);
        p
    }
}

/// Turns a toml error into one line naming the key when the error points at a `key = value` line
/// (wrong type, unknown key), else toml's own multi-line message with the position.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> SettingsError {
    let key = e.span().and_then(|span| {
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[line_start..line_end].trim();
        // `key = value`, or a table header `[name]` (this file has no tables, so that is the key).
        let k = if line.starts_with('[') {
            line.trim_matches(|c| c == '[' || c == ']')
        } else {
            line.split_once('=')?.0
        };
        let k = k.trim().trim_matches(|c| c == '"' || c == '\'');
        let line_no = text[..line_start].matches('\n').count() + 1;
        let plain = !k.is_empty() && !k.contains(['[', ']', '=']);
        plain.then(|| (k.to_owned(), line_no))
    });
    match key {
        Some((key, line)) => SettingsError::Key {
            file: file.to_owned(),
            key,
            message: format!("{} (line {line})", e.message().trim_end()),
        },
        None => SettingsError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
listen = "0.0.0.0:2121"
root = "data"
users_file = "users.toml"
threads = 2
passive_ports = "50000-50100"
passive_address = "192.0.2.7"
data_path = "splice"
buffers = 256
buffer_size = 131072
idle_timeout = 600
data_timeout = 20
control_send_timeout = 45
login_timeout = 15
max_line = 8192
max_sessions = 500
max_sessions_per_ip = 20
overwrite = "refuse"
fsync = "batch"
log_format = "json"
xferlog = "/var/log/xferlog"
metrics_listen = "127.0.0.1:9121"
shutdown_grace = 5
login_fail_delay_ms = 250
login_cache_secs = 0
max_login_failures_per_ip = 3
max_list_entries = 5000
chmod_mask = "0750"
allo_check = false
run_as_user = "ftp"
run_as_group = "nogroup"
max_login_checks_per_ip = 2
checksums = ["sha256", "CRC32C"]
"#;

    #[test]
    fn full_file_applies_to_server_config_and_policies() {
        let f = FileConfig::parse(FULL).unwrap();
        let mut cfg = ServerConfig::default_with("u".into(), "p".into());
        f.apply(&mut cfg);
        assert_eq!(cfg.listen, "0.0.0.0:2121".parse().unwrap());
        assert_eq!(cfg.root, PathBuf::from("data"));
        assert_eq!(cfg.threads, 2);
        assert_eq!(cfg.passive_ports, (50000, 50100));
        assert_eq!(cfg.passive_address, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(cfg.data_path, DataPathKind::Splice);
        assert_eq!(cfg.runtime.buffers, 256);
        assert_eq!(cfg.runtime.buffer_size, 131072);
        assert_eq!(cfg.idle_timeout, Duration::from_secs(600));
        assert_eq!(cfg.data_timeout, Duration::from_secs(20));
        assert_eq!(cfg.control_send_timeout, Duration::from_secs(45));
        assert_eq!(cfg.max_line, 8192);
        assert_eq!(cfg.max_list_entries, 5000);
        assert_eq!(cfg.chmod_mask, 0o750);
        assert!(!cfg.allo_check);
        assert_eq!(
            cfg.checksums,
            vec![
                crate::proto::checksum::Algo::Sha256,
                crate::proto::checksum::Algo::Crc32c
            ]
        );
        let p = f.policies();
        assert_eq!(
            p,
            Policies {
                users_file: Some(PathBuf::from("users.toml")),
                max_sessions: 500,
                max_sessions_per_ip: 20,
                login_timeout: Duration::from_secs(15),
                overwrite: Overwrite::Refuse,
                fsync: FsyncPolicy::Batch,
                log_format: LogFormat::Json,
                xferlog: Some(PathBuf::from("/var/log/xferlog")),
                metrics_listen: Some("127.0.0.1:9121".parse().unwrap()),
                shutdown_grace: Duration::from_secs(5),
                login_fail_delay: Duration::from_millis(250),
                login_cache: Duration::ZERO,
                max_login_failures_per_ip: 3,
                run_as_user: Some("ftp".into()),
                run_as_group: Some("nogroup".into()),
                max_login_checks_per_ip: 2,
            }
        );
    }

    #[test]
    fn empty_file_changes_nothing() {
        let f = FileConfig::parse("# nothing\n").unwrap();
        assert_eq!(f, FileConfig::default());
        let mut cfg = ServerConfig::default_with("u".into(), "p".into());
        let before = format!("{cfg:?}");
        f.apply(&mut cfg);
        assert_eq!(format!("{cfg:?}"), before);
        assert_eq!(f.policies(), Policies::default());
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases = [
            ("listen = \"localhost\"", "listen"),
            ("listen = \"1.2.3.4:99999\"", "listen"),
            ("root = \"\"", "root"),
            ("users_file = \"\"", "users_file"),
            ("threads = 5000", "threads"),
            ("threads = -1", "threads"),
            ("threads = \"two\"", "threads"),
            ("passive_ports = \"5-1\"", "passive_ports"),
            ("passive_ports = \"0-10\"", "passive_ports"),
            ("passive_ports = \"40000\"", "passive_ports"),
            ("passive_ports = \"1-70000\"", "passive_ports"),
            ("passive_ports = 40000", "passive_ports"),
            ("passive_address = \"example.org\"", "passive_address"),
            ("passive_address = \"0.0.0.0\"", "passive_address"),
            ("data_path = \"mmap\"", "data_path"),
            ("fs_ops = \"sometimes\"", "fs_ops"),
            ("buffers = 0", "buffers"),
            ("buffers = 100000", "buffers"),
            ("buffer_size = 0", "buffer_size"),
            ("idle_timeout = 0", "idle_timeout"),
            ("data_timeout = 0", "data_timeout"),
            ("login_timeout = 0", "login_timeout"),
            ("idle_timeout = 99999999999", "idle_timeout"),
            ("idle_timeout = 1.5", "idle_timeout"),
            ("max_line = 10", "max_line"),
            ("max_sessions = 0", "max_sessions"),
            ("max_sessions_per_ip = 99999999", "max_sessions_per_ip"),
            ("overwrite = \"yes\"", "overwrite"),
            ("fsync = \"always\"", "fsync"),
            ("log_format = \"xml\"", "log_format"),
            ("xferlog = \"\"", "xferlog"),
            ("metrics_listen = \"9121\"", "metrics_listen"),
            ("shutdown_grace = 99999999999", "shutdown_grace"),
            ("login_fail_delay_ms = 3600000", "login_fail_delay_ms"),
            ("login_cache_secs = 90000", "login_cache_secs"),
            (
                "max_login_failures_per_ip = -3",
                "max_login_failures_per_ip",
            ),
            ("passive_port = \"1-2\"", "passive_port"),
            ("max_list_entries = 0", "max_list_entries"),
            ("chmod_mask = \"0999\"", "chmod_mask"),
            ("checksums = [\"sha256\", \"sha3\"]", "checksums"),
            ("checksums = \"sha256\"", "checksums"),
            ("chmod_mask = \"17777\"", "chmod_mask"),
            ("chmod_mask = 755", "chmod_mask"),
            ("allo_check = \"yes\"", "allo_check"),
            ("run_as_user = \"\"", "run_as_user"),
            ("run_as_group = \"a b\"", "run_as_group"),
        ];
        for (text, key) in cases {
            let e = FileConfig::parse(&format!("# c\n{text}\n")).unwrap_err();
            let msg = e.to_string();
            assert!(
                matches!(&e, SettingsError::Key { key: k, .. } if k == key),
                "{text}: {msg}"
            );
            assert!(
                msg.starts_with(&format!("config file: key \"{key}\": ")),
                "{text}: {msg}"
            );
            assert!(!msg.contains('\n'), "{text}: one line: {msg}");
        }
    }

    #[test]
    fn messages_read_well() {
        let e = FileConfig::parse("passive_ports = \"5-1\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config file: key \"passive_ports\": expected LOW-HIGH with 0 < LOW <= HIGH, got \"5-1\""
        );
        let e = FileConfig::parse("threads = 2\nx = 1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config file: key \"x\": unknown field"),
            "{e}"
        );
        let e = FileConfig::parse("threads = \"2\"\n").unwrap_err();
        assert!(e.to_string().contains("(line 1)"), "{e}");
        let e = FileConfig::parse("[[[").unwrap_err();
        assert!(matches!(e, SettingsError::Syntax { .. }), "{e}");
        let e = FileConfig::parse("[server]\nthreads = 1\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config file: key \"server\": unknown field"),
            "{e}"
        );
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("40000-47999"), Ok((40000, 47999)));
        assert_eq!(parse_port_range(" 21 - 21 "), Ok((21, 21)));
        for bad in ["", "-", "1-", "-1", "a-b", "2-1", "0-0", "1-65536", "1-2-3"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keywords_round_trip() {
        for o in [Overwrite::Replace, Overwrite::Refuse] {
            assert_eq!(o.to_string().parse::<Overwrite>(), Ok(o));
        }
        for f in [FsyncPolicy::None, FsyncPolicy::File, FsyncPolicy::Batch] {
            assert_eq!(f.to_string().parse::<FsyncPolicy>(), Ok(f));
        }
        for l in [LogFormat::Human, LogFormat::Json] {
            assert_eq!(l.to_string().parse::<LogFormat>(), Ok(l));
        }
        let e = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert_eq!(
            e,
            "unknown fsync policy \"sometimes\" (expected \"none\", \"file\", \"batch\")"
        );
    }

    #[test]
    fn load_resolves_relative_paths_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringest.toml");
        std::fs::write(
            &path,
            "root = \"data\"\nusers_file = \"/etc/u.toml\"\nxferlog = \"log/xfer\"\n",
        )
        .unwrap();
        let f = FileConfig::load(&path).unwrap();
        assert_eq!(f.root, Some(dir.path().join("data")));
        assert_eq!(f.users_file, Some(PathBuf::from("/etc/u.toml")));
        assert_eq!(f.xferlog, Some(dir.path().join("log/xfer")));
        std::fs::write(&path, "threads = 4096\n").unwrap();
        let e = FileConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: key \"threads\": ", path.display())),
            "{e}"
        );
        let e = FileConfig::load(dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(e, SettingsError::Io { .. }), "{e}");
    }
}
