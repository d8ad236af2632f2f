//! The `ringest` binary: `ringest serve` runs the FTP ingest server.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ringest::server::{self, DataPathKind, ServerConfig};

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
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "RINGEST_LISTEN", default_value = "127.0.0.1:2121")]
    listen: SocketAddr,
    /// Directory served as the user's `/` (created if missing).
    #[arg(long, env = "RINGEST_ROOT", default_value = "ringest-data")]
    root: PathBuf,
    /// User name.
    #[arg(long, env = "RINGEST_USER", default_value = "ringest")]
    user: String,
    /// Password (generated and printed when omitted).
    #[arg(long, env = "RINGEST_PASSWORD")]
    password: Option<String>,
    /// Core threads (default: one per CPU).
    #[arg(long, env = "RINGEST_THREADS", default_value_t = 0)]
    threads: usize,
    /// Passive port range LOW-HIGH, split between cores.
    #[arg(long, env = "RINGEST_PASSIVE_PORTS", default_value = "40000-47999")]
    passive_ports: String,
    /// Address advertised in PASV replies (default: the control connection's local address).
    #[arg(long, env = "RINGEST_PASSIVE_ADDRESS")]
    passive_address: Option<IpAddr>,
    /// Upload data path: "fixed" (recv into registered buffers + WRITE_FIXED) or "splice".
    #[arg(long, env = "RINGEST_DATA_PATH", default_value = "fixed")]
    data_path: DataPathKind,
    /// Registered buffers per core.
    #[arg(long, env = "RINGEST_BUFFERS", default_value_t = 512)]
    buffers: u32,
    /// Size of each registered buffer in bytes.
    #[arg(long, env = "RINGEST_BUFFER_SIZE", default_value_t = 65536)]
    buffer_size: usize,
    /// Idle timeout of a control connection, seconds.
    #[arg(long, env = "RINGEST_IDLE_TIMEOUT", default_value_t = 300)]
    idle_timeout: u64,
    /// Data connection open/stall timeout, seconds.
    #[arg(long, env = "RINGEST_DATA_TIMEOUT", default_value_t = 30)]
    data_timeout: u64,
    /// Longest accepted command line in bytes.
    #[arg(long, env = "RINGEST_MAX_LINE", default_value_t = 4096)]
    max_line: usize,
}

fn parse_range(s: &str) -> Result<(u16, u16)> {
    let (lo, hi) = s
        .split_once('-')
        .context("expected LOW-HIGH, e.g. 40000-47999")?;
    let lo: u16 = lo
        .trim()
        .parse()
        .context("passive port range: LOW is not a port")?;
    let hi: u16 = hi
        .trim()
        .parse()
        .context("passive port range: HIGH is not a port")?;
    if lo == 0 || lo > hi {
        bail!("passive port range {s}: need 0 < LOW <= HIGH");
    }
    Ok((lo, hi))
}

fn generate_password() -> Result<String> {
    let mut raw = [0u8; 12];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness for a password: {e}"))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

fn serve(args: ServeArgs) -> Result<()> {
    let password = match args.password {
        Some(p) => p,
        None => generate_password()?,
    };
    let mut cfg = ServerConfig::default_with(args.user, password);
    cfg.listen = args.listen;
    cfg.root = args.root;
    cfg.threads = args.threads;
    cfg.passive_ports = parse_range(&args.passive_ports)?;
    cfg.passive_address = args.passive_address;
    cfg.data_path = args.data_path;
    cfg.runtime.buffers = args.buffers;
    cfg.runtime.buffer_size = args.buffer_size;
    cfg.idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    cfg.data_timeout = Duration::from_secs(args.data_timeout.max(1));
    cfg.max_line = args.max_line.clamp(512, 1 << 20);
    let (user, pass) = (cfg.user.clone(), cfg.password.clone());
    std::fs::create_dir_all(&cfg.root)
        .with_context(|| format!("creating root {}", cfg.root.display()))?;
    let root = std::fs::canonicalize(&cfg.root)
        .with_context(|| format!("resolving root {}", cfg.root.display()))?;
    cfg.root = root.clone();
    server::run(cfg, |started| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ringest: listening on {}", started.local_addr);
        let _ = writeln!(
            out,
            "ringest: user {user:?} password {pass:?} root {:?}",
            root.display().to_string()
        );
        let _ = writeln!(out, "ringest: {} core threads", started.threads);
        let _ = out.flush();
    })
    .context("server failed")
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGEST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(args) => serve(args),
    }
}
