//! The `ringest` binary: `ringest serve` runs the FTP ingest server; `check-config` validates a
//! configuration file; `passwd` prints a password hash for the users file.
//!
//! Settings come from, in order of precedence: command-line flags, `RINGEST_*` environment
//! variables, the TOML file given with `--config`, and built-in defaults.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ringest::proto::checksum::Algo;
use ringest::proto::proxy::Cidr;
use ringest::proto::session::TlsMode;
use ringest::server::auth::{hash_password, UserDb};
use ringest::server::config::policies::{ProxyMode, TlsData};
use ringest::server::config::{
    parse_mode_mask, parse_port_range, DirectIo, FileConfig, FsOps, FsyncPolicy, LogFormat,
    Overwrite, StorageKind,
};
use ringest::server::service::{self, lookup_account};
use ringest::server::storage::{check_root, RootProblem, Writer};
use ringest::server::{self, DataPathKind, ServerConfig};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ringest",
    version,
    about = "FTP bulk-ingest server on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server. With no flags: ./ringest-data on 127.0.0.1:2121 with a generated password.
    Serve(Box<ServeArgs>),
    /// Validate a configuration file (and the users file it names) or a users file, and check
    /// that every root exists and is a writable directory; exits non-zero naming each problem.
    CheckConfig {
        /// The TOML configuration file, or a users file (recognised by its [[user]] or
        /// [anonymous] tables).
        file: PathBuf,
    },
    /// Print an argon2id hash of a password for the users file: prompted for (twice, without
    /// echo) on a terminal, else read from the first line of stdin.
    Passwd {
        /// Take the password from this argument instead of stdin (visible in `ps`; for scripts).
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "RINGEST_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:2121] (port 0 picks a free port; it is printed).
    #[arg(long, env = "RINGEST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory served as the user's `/`, created if missing [default: ./ringest-data].
    #[arg(long, env = "RINGEST_ROOT")]
    root: Option<PathBuf>,
    /// User name of the single built-in user [default: ringest].
    #[arg(long, env = "RINGEST_USER")]
    user: Option<String>,
    /// Password of the built-in user (generated and printed when omitted).
    #[arg(long, env = "RINGEST_PASSWORD")]
    password: Option<String>,
    /// Users file (TOML with password hashes); replaces the built-in user.
    #[arg(long, env = "RINGEST_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// Core threads [default: one per CPU].
    #[arg(long, env = "RINGEST_THREADS")]
    threads: Option<usize>,
    /// Passive port range LOW-HIGH, split between cores [default: 40000-47999].
    #[arg(long, env = "RINGEST_PASSIVE_PORTS", value_parser = parse_port_range)]
    passive_ports: Option<(u16, u16)>,
    /// Address advertised in PASV replies [default: the control connection's local address].
    #[arg(long, env = "RINGEST_PASSIVE_ADDRESS")]
    passive_address: Option<IpAddr>,
    /// Upload data path: "auto" (splice with inline file-system calls, fixed with --fs-ops ring),
    /// "fixed" (recv into registered buffers + WRITE_FIXED) or "splice" (socket -> pipe -> file).
    #[arg(long, env = "RINGEST_DATA_PATH")]
    data_path: Option<DataPathKind>,
    /// Where uploads' file-system operations run: "inline" (direct system calls on the core thread;
    /// the default, measured fastest) or "ring" (io_uring, punted to io-wq workers: the core never
    /// waits on the file system).
    #[arg(long, env = "RINGEST_FS_OPS")]
    fs_ops: Option<FsOps>,
    /// O_DIRECT writes for uploads: "auto" (past --direct-io-threshold), "on", "off" [default: auto].
    #[arg(long, env = "RINGEST_DIRECT_IO")]
    direct_io: Option<DirectIo>,
    /// Bytes after which direct_io = auto switches an upload to direct writes [default: 8388608].
    #[arg(long, env = "RINGEST_DIRECT_IO_THRESHOLD")]
    direct_io_threshold: Option<u64>,
    /// FTPS on control connections: "off", "optional" (AUTH TLS accepted) or "required" (USER
    /// before AUTH TLS is refused) [default: optional].
    #[arg(long, env = "RINGEST_TLS")]
    tls: Option<TlsMode>,
    /// Data connections: "optional" or "required" (PROT P needed; PROT C refused) [default:
    /// optional].
    #[arg(long, env = "RINGEST_TLS_DATA")]
    tls_data: Option<TlsData>,
    /// Whether a protected data connection must resume its control connection's TLS session
    /// [default: true].
    #[arg(long, env = "RINGEST_TLS_DATA_RESUMPTION")]
    tls_data_resumption: Option<bool>,
    /// PEM certificate chain [default: a self-signed certificate created beside the root].
    #[arg(long, env = "RINGEST_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [default: in the certificate file].
    #[arg(long, env = "RINGEST_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// A second address where TLS starts at once (implicit FTPS, conventionally port 990).
    #[arg(long, env = "RINGEST_IMPLICIT_TLS_LISTEN")]
    implicit_tls_listen: Option<SocketAddr>,
    /// PROXY protocol (v1 and v2) from layer-4 balancers: "off", "optional" (connections from
    /// --proxy-from may carry a header) or "required" (every connection must come from
    /// --proxy-from with a header) [default: off].
    #[arg(long, env = "RINGEST_PROXY_PROTOCOL")]
    proxy_protocol: Option<ProxyMode>,
    /// The balancers' addresses (comma-separated, ADDRESS or ADDRESS/PREFIX).
    #[arg(long, env = "RINGEST_PROXY_FROM", value_delimiter = ',')]
    proxy_from: Option<Vec<Cidr>>,
    /// Seconds a balancer's connection may take to send its header [default: 5].
    #[arg(long, env = "RINGEST_PROXY_TIMEOUT")]
    proxy_timeout: Option<u64>,
    /// Digests computed while uploads arrive and stored with each file, comma-separated: crc32,
    /// crc32c, adler32, md5, sha1, sha256, sha512 [default: none].
    #[arg(long, env = "RINGEST_CHECKSUMS", value_delimiter = ',', value_parser = parse_algo)]
    checksums: Option<Vec<Algo>>,
    /// Where uploads land: "local" (the root directories) or "s3" (a bucket; see the --s3-*
    /// options and docs/s3.md) [default: local].
    #[arg(long, env = "RINGEST_STORAGE")]
    storage: Option<StorageKind>,
    /// S3 endpoint URL, e.g. http://127.0.0.1:3900 (path-style requests).
    #[arg(long, env = "RINGEST_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region [default: us-east-1].
    #[arg(long, env = "RINGEST_S3_REGION")]
    s3_region: Option<String>,
    /// S3 bucket.
    #[arg(long, env = "RINGEST_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Key prefix of each user's objects; {user} is the login name [default: {user}/].
    #[arg(long, env = "RINGEST_S3_PREFIX")]
    s3_prefix: Option<String>,
    /// File with the S3 key id and secret (two lines) [default: RINGEST_S3_KEY_ID and
    /// RINGEST_S3_SECRET, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY].
    #[arg(long, env = "RINGEST_S3_CREDENTIALS_FILE")]
    s3_credentials_file: Option<PathBuf>,
    /// Size of the first multipart parts in bytes, 5 MiB to 5 GiB [default: 8388608].
    #[arg(long, env = "RINGEST_S3_PART_SIZE")]
    s3_part_size: Option<u64>,
    /// Bytes all uploads may hold in part buffers; past it uploads wait [default: 1073741824].
    #[arg(long, env = "RINGEST_S3_MEMORY_CAP")]
    s3_memory_cap: Option<u64>,
    /// Seconds a store request may take with its retries before the command fails with 451
    /// [default: 30].
    #[arg(long, env = "RINGEST_S3_TIMEOUT")]
    s3_timeout: Option<u64>,
    /// Threads sending store requests [default: 8].
    #[arg(long, env = "RINGEST_S3_THREADS")]
    s3_threads: Option<usize>,
    /// SO_RCVBUF of upload data connections with storage s3, bytes; 0 leaves the kernel's
    /// autotuning [default: 1048576].
    #[arg(long, env = "RINGEST_S3_SOCKET_BUFFER")]
    s3_socket_buffer: Option<usize>,
    /// Registered buffers per core [default: 512].
    #[arg(long, env = "RINGEST_BUFFERS")]
    buffers: Option<u32>,
    /// Size of each registered buffer in bytes [default: 65536].
    #[arg(long, env = "RINGEST_BUFFER_SIZE")]
    buffer_size: Option<usize>,
    /// Idle timeout of a control connection, seconds [default: 300].
    #[arg(long, env = "RINGEST_IDLE_TIMEOUT")]
    idle_timeout: Option<u64>,
    /// Data connection open/stall timeout, seconds [default: 30].
    #[arg(long, env = "RINGEST_DATA_TIMEOUT")]
    data_timeout: Option<u64>,
    /// How long a reply may wait for a client that does not read its control connection, seconds
    /// [default: 60].
    #[arg(long, env = "RINGEST_CONTROL_SEND_TIMEOUT")]
    control_send_timeout: Option<u64>,
    /// Time allowed to log in, seconds [default: 30].
    #[arg(long, env = "RINGEST_LOGIN_TIMEOUT")]
    login_timeout: Option<u64>,
    /// Longest accepted command line in bytes [default: 4096].
    #[arg(long, env = "RINGEST_MAX_LINE")]
    max_line: Option<usize>,
    /// Sessions at once, server-wide [default: 20000].
    #[arg(long, env = "RINGEST_MAX_SESSIONS")]
    max_sessions: Option<usize>,
    /// Sessions at once per client IP; 0 = unlimited [default: 0].
    #[arg(long, env = "RINGEST_MAX_SESSIONS_PER_IP")]
    max_sessions_per_ip: Option<usize>,
    /// Failed logins per minute per client IP before further attempts are refused [default: 10].
    #[arg(long, env = "RINGEST_MAX_LOGIN_FAILURES_PER_IP")]
    max_login_failures_per_ip: Option<u32>,
    /// Password checks running at once per client IP; more wait for a slot [default: 4].
    #[arg(long, env = "RINGEST_MAX_LOGIN_CHECKS_PER_IP")]
    max_login_checks_per_ip: Option<u32>,
    /// Delay before answering a failed login, milliseconds [default: 1000].
    #[arg(long, env = "RINGEST_LOGIN_FAIL_DELAY_MS")]
    login_fail_delay_ms: Option<u64>,
    /// Seconds a successful login lets the same user and password skip the password hash;
    /// 0 = hash every login [default: 300].
    #[arg(long, env = "RINGEST_LOGIN_CACHE_SECS")]
    login_cache_secs: Option<u64>,
    /// What STOR does to an existing file: "replace" (atomically) or "refuse" [default: replace].
    #[arg(long, env = "RINGEST_OVERWRITE")]
    overwrite: Option<Overwrite>,
    /// When data is made durable: "none", "file" (fsync each) or "batch" [default: none].
    #[arg(long, env = "RINGEST_FSYNC")]
    fsync: Option<FsyncPolicy>,
    /// Log format on stderr: "human" or "json" [default: human].
    #[arg(long, env = "RINGEST_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    /// Append an xferlog-format transfer log to this file.
    #[arg(long, env = "RINGEST_XFERLOG")]
    xferlog: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long, env = "RINGEST_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Seconds SIGTERM waits for running transfers [default: 30].
    #[arg(long, env = "RINGEST_SHUTDOWN_GRACE")]
    shutdown_grace: Option<u64>,
    /// Entries one LIST/NLST/MLSD returns at most, wildcard matches included [default: 100000].
    #[arg(long, env = "RINGEST_MAX_LIST_ENTRIES")]
    max_list_entries: Option<usize>,
    /// SITE CHMOD sets the requested mode within this octal mask; 0 turns it off [default: 0777].
    #[arg(long, env = "RINGEST_CHMOD_MASK", value_parser = parse_mode_mask)]
    chmod_mask: Option<u32>,
    /// Refuse (426, nothing stored) a stream-mode upload that ends short of the size the client
    /// announced with ALLO: "true" or "false" [default: true].
    #[arg(long, env = "RINGEST_ALLO_CHECK")]
    allo_check: Option<bool>,
    /// Switch to this system user once the listeners are bound (start as root to bind port 21).
    #[arg(long, env = "RINGEST_RUN_AS_USER")]
    run_as_user: Option<String>,
    /// Group to switch to with --run-as-user [default: the user's primary group].
    #[arg(long, env = "RINGEST_RUN_AS_GROUP")]
    run_as_group: Option<String>,
}

fn generate_password() -> Result<String> {
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness for a password: {e}"))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Ok(raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Builds the configuration: defaults, then the file, then environment and flags (clap has already
/// merged those two, flags first).
fn build_config(a: &ServeArgs) -> Result<ServerConfig> {
    let mut cfg = ServerConfig::default_with("ringest".into(), String::new());
    if let Some(path) = &a.config {
        let file = FileConfig::load(path)?;
        file.apply(&mut cfg);
        file.apply_policies(&mut cfg.policies);
    }
    let secs = |s: u64| Duration::from_secs(s.max(1));
    macro_rules! set {
        ($($field:ident => $target:expr),* $(,)?) => {
            $(if let Some(v) = a.$field.clone() { $target = v; })*
        };
    }
    set! {
        listen => cfg.listen,
        root => cfg.root,
        user => cfg.user,
        threads => cfg.threads,
        passive_ports => cfg.passive_ports,
        data_path => cfg.data_path,
        fs_ops => cfg.fs_ops,
        direct_io => cfg.direct_io,
        direct_io_threshold => cfg.direct_io_threshold,
        buffers => cfg.runtime.buffers,
        buffer_size => cfg.runtime.buffer_size,
        max_line => cfg.max_line,
        max_sessions => cfg.policies.max_sessions,
        max_sessions_per_ip => cfg.policies.max_sessions_per_ip,
        max_login_failures_per_ip => cfg.policies.max_login_failures_per_ip,
        max_login_checks_per_ip => cfg.policies.max_login_checks_per_ip,
        overwrite => cfg.policies.overwrite,
        fsync => cfg.policies.fsync,
        log_format => cfg.policies.log_format,
        max_list_entries => cfg.max_list_entries,
        chmod_mask => cfg.chmod_mask,
        allo_check => cfg.allo_check,
        tls => cfg.tls.mode,
        tls_data_resumption => cfg.tls.data_resumption,
        proxy_protocol => cfg.proxy.mode,
        proxy_from => cfg.proxy.from,
        checksums => cfg.checksums,
        storage => cfg.storage,
        s3_endpoint => cfg.s3.endpoint,
        s3_region => cfg.s3.region,
        s3_bucket => cfg.s3.bucket,
        s3_prefix => cfg.s3.prefix,
        s3_part_size => cfg.s3.part_size,
        s3_memory_cap => cfg.s3.memory_cap,
        s3_threads => cfg.s3.threads,
        s3_socket_buffer => cfg.s3.socket_buffer,
    }
    if let Some(v) = &a.s3_credentials_file {
        cfg.s3.credentials_file = Some(v.clone());
    }
    if let Some(v) = a.s3_timeout {
        cfg.s3.timeout = secs(v);
    }
    cfg.s3.threads = cfg.s3.threads.clamp(1, 256);
    cfg.s3
        .check(cfg.storage)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    if let Some(v) = a.proxy_timeout {
        cfg.proxy.timeout = secs(v);
    }
    if let Some(v) = a.tls_data {
        cfg.tls.data_required = v == TlsData::Required;
    }
    if let Some(v) = &a.tls_cert {
        cfg.tls.cert = Some(v.clone());
    }
    if let Some(v) = &a.tls_key {
        cfg.tls.key = Some(v.clone());
    }
    if let Some(v) = a.implicit_tls_listen {
        cfg.tls.implicit_listen = Some(v);
    }
    if let Some(v) = &a.run_as_user {
        cfg.policies.run_as_user = Some(v.clone());
    }
    if let Some(v) = &a.run_as_group {
        cfg.policies.run_as_group = Some(v.clone());
    }
    cfg.max_list_entries = cfg.max_list_entries.max(1);
    if let Some(v) = a.passive_address {
        cfg.passive_address = Some(v);
    }
    if let Some(v) = &a.users_file {
        cfg.policies.users_file = Some(v.clone());
    }
    if let Some(v) = &a.xferlog {
        cfg.policies.xferlog = Some(v.clone());
    }
    if let Some(v) = a.metrics_listen {
        cfg.policies.metrics_listen = Some(v);
    }
    if let Some(v) = a.idle_timeout {
        cfg.idle_timeout = secs(v);
    }
    if let Some(v) = a.data_timeout {
        cfg.data_timeout = secs(v);
    }
    if let Some(v) = a.control_send_timeout {
        cfg.control_send_timeout = secs(v);
    }
    if let Some(v) = a.login_timeout {
        cfg.policies.login_timeout = secs(v);
    }
    if let Some(v) = a.shutdown_grace {
        cfg.policies.shutdown_grace = Duration::from_secs(v);
    }
    if let Some(v) = a.login_fail_delay_ms {
        cfg.policies.login_fail_delay = Duration::from_millis(v);
    }
    if let Some(v) = a.login_cache_secs {
        cfg.policies.login_cache = Duration::from_secs(v.min(86_400));
    }
    cfg.max_line = cfg.max_line.clamp(512, 1 << 20);
    cfg.password = match &a.password {
        Some(p) => p.clone(),
        None => generate_password()?,
    };
    Ok(cfg)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGEST_LOG")
        .unwrap_or_else(|_| "info".into());
    // Colour codes only for a person at a terminal: in a file or a journal they are noise.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

fn serve(args: &ServeArgs) -> Result<()> {
    let mut cfg = build_config(args)?;
    init_logging(cfg.policies.log_format);
    if cfg.root.exists() && !cfg.root.is_dir() {
        anyhow::bail!("{}", RootProblem::NotADirectory(cfg.root.clone()));
    }
    std::fs::create_dir_all(&cfg.root)
        .with_context(|| format!("creating root {}", cfg.root.display()))?;
    cfg.root = std::fs::canonicalize(&cfg.root)
        .with_context(|| format!("resolving root {}", cfg.root.display()))?;
    let (user, pass, root) = (cfg.user.clone(), cfg.password.clone(), cfg.root.clone());
    let users_file = cfg.policies.users_file.clone();
    let s3_line = (cfg.storage == StorageKind::S3).then(|| {
        format!(
            "ringest: storage s3 {} bucket {:?}, each user's keys under {:?}",
            cfg.s3.endpoint, cfg.s3.bucket, cfg.s3.prefix
        )
    });
    server::run(cfg, |started| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ringest: listening on {}", started.local_addr);
        match &users_file {
            Some(f) => {
                let _ = writeln!(out, "ringest: users from {:?}", f.display().to_string());
            }
            None => {
                let _ = writeln!(
                    out,
                    "ringest: user {user:?} password {pass:?} root {:?}",
                    root.display().to_string()
                );
            }
        }
        if let Some(l) = &s3_line {
            let _ = writeln!(out, "{l}");
        }
        let _ = writeln!(out, "ringest: {} core threads", started.threads);
        if let Some(t) = &started.tls {
            let _ = writeln!(
                out,
                "ringest: TLS certificate {:?}{} SHA-256 {}",
                t.cert_path.display().to_string(),
                if t.created {
                    " (self-signed, created now)"
                } else {
                    ""
                },
                t.info.fingerprint
            );
        }
        if let Some(a) = started.implicit_tls_addr {
            let _ = writeln!(out, "ringest: implicit TLS on {a}");
        }
        if let Some(m) = started.metrics_addr {
            let _ = writeln!(out, "ringest: metrics on http://{m}/metrics");
        }
        let _ = out.flush();
        service::notify_ready();
    })
    .context("server failed")
}

/// Whether `text` is a users file rather than a configuration file: only the users file has the
/// `[[user]]` and `[anonymous]` tables, and the configuration file has no tables at all.
fn looks_like_users_file(text: &str) -> bool {
    match text.parse::<toml::Table>() {
        Ok(t) => !t.is_empty() && t.keys().all(|k| k == "user" || k == "anonymous"),
        Err(_) => text.contains("[[user]]") || text.contains("[anonymous]"),
    }
}

fn describe_users(db: &UserDb) -> String {
    format!(
        "{} users{}",
        db.len(),
        if db.anonymous_enabled() {
            ", anonymous"
        } else {
            ""
        }
    )
}

/// Checks each root; prints every problem and fails if there was one.
fn check_roots(file: &Path, roots: &[PathBuf], writer: &Writer) -> Result<()> {
    let problems: Vec<String> = roots
        .iter()
        .filter_map(|r| check_root(r, writer).err())
        .map(|e| format!("{}: {e}", file.display()))
        .collect();
    for p in &problems {
        eprintln!("ringest: {p}");
    }
    anyhow::ensure!(
        problems.is_empty(),
        "{}: {} root problem(s)",
        file.display(),
        problems.len()
    );
    Ok(())
}

fn check_config(file: &PathBuf) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if looks_like_users_file(&text) {
        let db = UserDb::load(file)?;
        check_roots(file, &db.roots(), &Writer::ThisProcess)?;
        println!(
            "{}: ok (users file: {})",
            file.display(),
            describe_users(&db)
        );
        return Ok(());
    }
    let cfg = FileConfig::load(file)?;
    let policies = cfg.policies();
    // Roots must be writable by the user the server will run as.
    let writer = match &policies.run_as_user {
        Some(u) => {
            let a = lookup_account(u, policies.run_as_group.as_deref())
                .with_context(|| format!("{}: key \"run_as_user\"", file.display()))?;
            Writer::User {
                name: a.name,
                uid: a.uid,
                gid: a.gid,
                groups: a.groups,
            }
        }
        None => Writer::ThisProcess,
    };
    let (roots, what) = match &cfg.users_file {
        Some(users) => {
            let db = UserDb::load(users)
                .with_context(|| format!("{}: key \"users_file\"", file.display()))?;
            (db.roots(), describe_users(&db))
        }
        // The built-in user's root is created at start when missing (and without a `root` key
        // it is relative to wherever the server starts), so only an existing one is checked.
        None => {
            let root = cfg
                .root
                .clone()
                .unwrap_or_else(|| PathBuf::from("ringest-data"));
            let what = "the built-in user".to_owned();
            if root.symlink_metadata().is_err() {
                println!(
                    "{}: root {} does not exist yet; the server creates it at start",
                    file.display(),
                    root.display()
                );
                (Vec::new(), what)
            } else {
                (vec![root], what)
            }
        }
    };
    // With an object store, users' roots are key prefixes, not directories to check.
    if cfg.storage.as_deref() != Some("s3") {
        check_roots(file, &roots, &writer)?;
    }
    let tls = check_tls(file, &cfg)?;
    println!("{}: ok ({what}{tls})", file.display());
    Ok(())
}

/// The configured certificate must load, match its key and be valid now; a self-signed one is
/// only announced. Returns a note for the summary line.
fn check_tls(file: &Path, cfg: &FileConfig) -> Result<String> {
    let mut sc = ServerConfig::default_with(String::new(), String::new());
    cfg.apply(&mut sc);
    if sc.tls.mode == TlsMode::Off && sc.tls.implicit_listen.is_none() {
        return Ok(", FTPS off".into());
    }
    if sc.tls.cert.is_none() {
        let (c, _, _) = sc.tls.paths(&sc.root);
        return Ok(format!(
            ", FTPS with the self-signed certificate {} (created at start if missing)",
            c.display()
        ));
    }
    let loaded = sc
        .tls
        .load(&sc.root)
        .with_context(|| format!("{}: keys \"tls_cert\"/\"tls_key\"", file.display()))?;
    let Some(t) = loaded else {
        return Ok(String::new());
    };
    let problems = ringest::server::config::tls::problems(&t.info, std::time::SystemTime::now());
    let expired = t.info.expired(std::time::SystemTime::now())
        || t.info.not_yet_valid(std::time::SystemTime::now());
    for p in &problems {
        println!("{}: {}: {p}", file.display(), t.cert_path.display());
    }
    if expired {
        anyhow::bail!(
            "{}: key \"tls_cert\": {}",
            file.display(),
            problems.join("; ")
        );
    }
    Ok(format!(
        ", FTPS certificate {} SHA-256 {}",
        t.cert_path.display(),
        t.info.fingerprint
    ))
}

/// Reads one line from the terminal on stdin without echoing it (the newline is still shown).
/// Echo goes off before the prompt appears, so nothing typed after the prompt is ever shown.
fn read_hidden(prompt: &str) -> Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data, filled by tcgetattr on the terminal.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is stdin, known to be a terminal; `saved` is a live termios.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(std::io::Error::last_os_error()).context("reading the terminal settings");
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: sets the attributes just read, with echo off.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(std::io::Error::last_os_error()).context("turning off echo");
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the attributes saved above, whatever the read did.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn passwd(password: Option<String>) -> Result<()> {
    let plain = match password {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            let first = read_hidden("Password: ")?;
            anyhow::ensure!(!first.is_empty(), "empty password");
            let again = read_hidden("Retype password: ")?;
            anyhow::ensure!(first == again, "the passwords do not match");
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(!plain.is_empty(), "empty password");
    println!("{}", hash_password(&plain)?);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Cmd::Serve(args) => serve(&args),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Passwd { password } => passwd(password),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes, without repeating a cause that is already
            // part of the message above it.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("ringest: error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One `--checksums` name.
fn parse_algo(s: &str) -> std::result::Result<Algo, String> {
    ringest::proto::checksum::parse_list(&[s])
        .map_err(|e| e.to_string())
        .map(|v| v[0])
}
