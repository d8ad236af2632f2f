//! The `ringest` binary: `ringest serve` runs the FTP ingest server; `check-config` validates a
//! configuration file; `passwd` prints a password hash for the users file.
//!
//! Settings come from, in order of precedence: command-line flags, `RINGEST_*` environment
//! variables, the TOML file given with `--config`, and built-in defaults.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ringest::server::auth::{hash_password, UserDb};
use ringest::server::config::{
    parse_port_range, DirectIo, FileConfig, FsOps, FsyncPolicy, LogFormat, Overwrite,
};
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
    /// Validate a configuration file (and the users file it names); exits non-zero with the problem.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Print an argon2id hash of a password (read from stdin) for the users file.
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
    }
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
    std::fs::create_dir_all(&cfg.root)
        .with_context(|| format!("creating root {}", cfg.root.display()))?;
    cfg.root = std::fs::canonicalize(&cfg.root)
        .with_context(|| format!("resolving root {}", cfg.root.display()))?;
    let (user, pass, root) = (cfg.user.clone(), cfg.password.clone(), cfg.root.clone());
    let users_file = cfg.policies.users_file.clone();
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
        let _ = writeln!(out, "ringest: {} core threads", started.threads);
        if let Some(m) = started.metrics_addr {
            let _ = writeln!(out, "ringest: metrics on http://{m}/metrics");
        }
        let _ = out.flush();
    })
    .context("server failed")
}

fn check_config(file: &PathBuf) -> Result<()> {
    let cfg = FileConfig::load(file)?;
    if let Some(users) = &cfg.users_file {
        let db = UserDb::load(users)
            .with_context(|| format!("{}: key \"users_file\"", file.display()))?;
        println!(
            "{}: ok ({} users{})",
            file.display(),
            db.len(),
            if db.anonymous_enabled() {
                ", anonymous"
            } else {
                ""
            }
        );
    } else {
        println!("{}: ok", file.display());
    }
    Ok(())
}

fn passwd(password: Option<String>) -> Result<()> {
    let plain = match password {
        Some(p) => p,
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
