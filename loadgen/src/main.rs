//! `loadgen`: FTP ingest load generator for ringest (and any FTP server).
//!
//! Scenarios: `stream` (one login per session, a new data connection per file), `stream-reconnect` (a
//! new control connection per file too), `block` (MODE B: one data connection per session while the
//! server keeps it open), `eblock` (MODE E, GridFTP extended block mode as `globus-url-copy -fast
//! -p N` speaks it: `--parallel` data connections per session, kept across files) and `compare`
//! (stream, block and eblock on the same files). Sessions are spread over one io_uring
//! runtime thread per CPU and over `--source-addrs`. File content is a pure function of (seed, file
//! id, offset), so `--verify` can check every file without keeping what was sent.
//!
//! FTPS (RFC 4217): `--tls` (explicit, `AUTH TLS`) or `--tls-implicit`, with `--ca FILE` or
//! `--insecure`; every data connection is TLS too and resumes its control connection's session.
//!
//! Exit code: 0 when every file was stored (and verified, with `--verify`); 1 when some failed or
//! mismatched; 2 on a fatal problem (cannot connect, the server gone mid-run, login refused, MODE B
//! or MODE E unsupported, bad usage).

mod content;
mod ftp;
mod run;
mod stats;
mod tls;
mod verify;

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use content::{parse_size, SizeSpec};
use run::{Job, RunCfg};
use stats::{PhaseResult, FILE_OK};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "FTP ingest load generator: MODE S vs MODE B vs MODE E"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Server host name or address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    /// Server control port.
    #[arg(long, global = true, default_value_t = 2121)]
    port: u16,
    /// User name.
    #[arg(long, global = true, default_value = "ringest")]
    user: String,
    /// Password (or env LOADGEN_PASSWORD).
    #[arg(long, global = true, env = "LOADGEN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Concurrent sessions.
    #[arg(long, global = true, default_value_t = 64)]
    sessions: usize,
    /// Files in total, across all sessions.
    #[arg(long, global = true, default_value_t = 10000)]
    files: u64,
    /// File size: 4096, 4K, 1M, or a range 4K..1M (uniform per file, deterministic per file id).
    #[arg(long, global = true, default_value = "4K")]
    size: String,
    /// Hard bound on each phase, in seconds.
    #[arg(long, global = true, default_value_t = 300)]
    duration: u64,
    /// Client threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Pin client threads to CPUs: "auto" pins only when there is one thread per CPU (each CPU then
    /// carries the same share of the load); with fewer threads, a pinned client on a machine shared
    /// with the server can sit on the very core that serves it while another core idles.
    #[arg(long, global = true, default_value = "auto")]
    pin: Pin,
    /// Source addresses, round-robin per session: `127.0.0.1-127.0.0.8`, a comma list, or one address.
    #[arg(long, global = true)]
    source_addrs: Option<String>,
    /// Use PASV for data connections (the default).
    #[arg(long, global = true, overrides_with = "epsv")]
    passive: bool,
    /// Use EPSV instead of PASV.
    #[arg(long, global = true, overrides_with = "passive")]
    epsv: bool,
    /// After the run, check every stored file (by downloading it, or on disk with --verify-dir).
    #[arg(long, global = true)]
    verify: bool,
    /// Verify on disk: the server's root directory as seen from here (implies --verify).
    #[arg(long, global = true)]
    verify_dir: Option<PathBuf>,
    /// Print one JSON object on stdout at the end instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// After each phase, append the remote names of the files the server acknowledged (226/250),
    /// one per line, to FILE: what a test checks the store for after a node was lost mid-run.
    #[arg(long, global = true, value_name = "FILE")]
    ok_list: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    /// Remote directory for the files (default lg-<pid>-<scenario>); created with MKD, never deleted.
    #[arg(long, global = true)]
    prefix: Option<String>,
    /// Content seed (default: random); printed so a run's files can be re-verified.
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Timeout for each network operation (connect, reply, send), seconds.
    #[arg(long, global = true, default_value_t = 30)]
    op_timeout: u64,
    /// Send `ALLO <size>` before each STOR (ringest then refuses a MODE S upload cut short of it).
    /// eblock always sends it, as globus-url-copy does: MODE E blocks carry no total size.
    #[arg(long, global = true)]
    allo: bool,
    /// block: send the next file's STOR right after a file's last block, before reading that
    /// file's 250 (command pipelining, as lftp does with `ftp:sync-mode off`), so a server may
    /// answer the 250 and the next 150/125 in one send. Not with --allo.
    #[arg(long, global = true, conflicts_with = "allo")]
    pipeline: bool,
    /// FTPS, explicit: `AUTH TLS` after the greeting, then PBSZ 0 / PROT P after the login; every data
    /// connection is TLS and resumes the control connection's session. Needs --ca or --insecure.
    #[arg(long, global = true, conflicts_with = "tls_implicit")]
    tls: bool,
    /// FTPS, implicit: the TLS handshake right after connecting, before the greeting (the port is
    /// usually 990: pass --port). Needs --ca or --insecure.
    #[arg(long, global = true)]
    tls_implicit: bool,
    /// Check the server's certificate against the PEM certificates in FILE (e.g. its self-signed one).
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (benchmarks against self-signed servers).
    #[arg(long, global = true)]
    insecure: bool,
    /// The name the certificate must carry (default: --host as given, an IP address or a DNS name).
    #[arg(long, global = true, value_name = "NAME")]
    tls_name: Option<String>,
    /// MODE E (eblock): data connections per session, all to the session's one PASV port (as
    /// `globus-url-copy -p N`).
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    parallel: usize,
    /// MODE E (eblock): largest payload per block (e.g. 256K, 1M); larger files are cut into blocks
    /// that go to whichever data connection is free.
    #[arg(long, global = true, default_value = "256K", value_name = "SIZE")]
    block_size: String,
}

/// Whether client threads are pinned to CPUs (see `--pin`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    Auto,
    On,
    Off,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// One login per session; PASV, new data connection, STOR, close, 226 for each file.
    Stream,
    /// A new control connection (login ... QUIT) per file, otherwise as stream.
    StreamReconnect,
    /// MODE B: PASV once, then STOR after STOR over the same data connection (250 keeps it open).
    Block,
    /// MODE E: PASV once, --parallel data connections to it; per file ALLO, STOR, blocks spread
    /// over the connections, EOD on each and EOF on one, 226; the connections stay open.
    Eblock,
    /// stream, block and eblock with the same settings and files; prints them side by side with
    /// the ratios to stream (eblock is left out with --tls: MODE E has no TLS data connections).
    Compare,
}

fn parse_sources(s: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("bad address {a:?} in --source-addrs"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("bad address {b:?} in --source-addrs"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if a > b || b - a >= 4096 {
                bail!("--source-addrs range {part}: need LOW <= HIGH and at most 4096 addresses");
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("bad address {part:?} in --source-addrs"))?,
            );
        }
    }
    Ok(out)
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Logs in once before the load: checks credentials, creates the prefix directory and, for block
/// modes, that the server accepts MODE B or MODE E. Errors here are fatal and explained.
fn setup(cfg: &RunCfg, prefix: &str, job: Job) -> Result<()> {
    let cfg = cfg.clone();
    let prefix = prefix.to_string();
    let rt = run::runtime_config();
    let res = ringest::engine::block_on(0, &rt, async move {
        let src = cfg.sources.first().copied();
        let implicit = cfg
            .tls
            .as_ref()
            .is_some_and(|t| t.mode == tls::Mode::Implicit);
        let mut c = ftp::Control::open(cfg.server, src, cfg.op_timeout, cfg.tls.as_deref())
            .await
            .map_err(|e| match e {
                // A plain port answers the ClientHello with its 220 greeting.
                ftp::Fail::Tls { .. } if implicit => format!(
                    "{} (not an implicit-TLS port? then use --tls)",
                    e.describe()
                ),
                ftp::Fail::Tls { .. } | ftp::Fail::Fatal(_) => e.describe(),
                // An implicit-TLS port says nothing until it gets a ClientHello.
                ftp::Fail::Timeout { step: "greeting" } if cfg.tls.is_some() && !implicit => format!(
                    "{}: no greeting (an implicit-TLS port? then use --tls-implicit instead of --tls)",
                    e.describe()
                ),
                _ => format!(
                    "cannot reach the server at {}: {}",
                    cfg.server,
                    e.describe()
                ),
            })?;
        c.login(&cfg.user, &cfg.password)
            .await
            .map_err(|e| format!("login failed: {}", e.describe()))?;
        let r = c
            .cmd(&format!("MKD {prefix}"), "MKD")
            .await
            .map_err(|e| e.describe())?;
        let mut warn = None;
        if r.code != 257 {
            warn = Some(format!(
                "MKD {prefix} answered {} {} (continuing)",
                r.code,
                r.lines.join(" ")
            ));
        }
        if job == Job::Block {
            let r = c.cmd("MODE B", "MODE B").await.map_err(|e| e.describe())?;
            if r.code != 200 {
                return Err(format!(
                    "server does not support MODE B (block mode): MODE B answered {} {}",
                    r.code,
                    r.lines.join(" ")
                ));
            }
        }
        if job == Job::Eblock {
            let r = c.cmd("MODE E", "MODE E").await.map_err(|e| e.describe())?;
            if r.code != 200 {
                return Err(run::mode_e_refused(&r));
            }
        }
        c.quit().await;
        Ok::<_, String>(warn)
    })
    .context("starting the setup runtime")?;
    match res {
        Ok(Some(w)) => {
            eprintln!("loadgen: warning: {w}");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => bail!(e),
    }
}

struct ScenarioResult {
    load: PhaseResult,
    verify: Option<verify::VerifyResult>,
}

impl ScenarioResult {
    fn success(&self) -> bool {
        self.load.fatal.is_none()
            && self.load.ok == self.load.files
            && self
                .verify
                .as_ref()
                .is_none_or(|v| v.verified == self.load.ok)
    }

    fn to_json(&self) -> Value {
        let mut v = self.load.to_json();
        if let (Some(obj), Some(ver)) = (v.as_object_mut(), &self.verify) {
            obj.insert("verify".into(), ver.to_json());
        }
        v
    }

    fn print_human(&self) {
        self.load.print_human();
        if let Some(v) = &self.verify {
            v.print_human();
        }
    }
}

fn run_scenario(cfg: &Arc<RunCfg>, cli: &Cli, job: Job, prefix: &str) -> Result<ScenarioResult> {
    if let Err(e) = setup(cfg, prefix, job) {
        let msg = format!("{e:#}");
        eprintln!("loadgen: {}: {msg}", job.name());
        let load = PhaseResult::fatal_only(job.name(), prefix, cli.files, msg);
        return Ok(ScenarioResult { load, verify: None });
    }
    let load = run::run_phase(cfg, job, prefix, (0..cli.files).collect())?;
    if let Some(path) = &cli.ok_list {
        write_ok_list(path, prefix, &load.status)?;
    }
    if let Some(f) = &load.fatal {
        eprintln!("loadgen: {}: {f}", job.name());
        return Ok(ScenarioResult { load, verify: None });
    }
    let verify = if cli.verify || cli.verify_dir.is_some() {
        let ok_ids: Vec<u64> = load
            .status
            .iter()
            .enumerate()
            .filter(|(_, &s)| s == FILE_OK)
            .map(|(i, _)| i as u64)
            .collect();
        Some(match &cli.verify_dir {
            Some(dir) => verify::verify_dir(cfg, &dir.join(prefix), &ok_ids),
            None => verify::verify_download(cfg, prefix, ok_ids)?,
        })
    } else {
        None
    };
    Ok(ScenarioResult { load, verify })
}

/// Appends `prefix/f<id>` of every acknowledged file to `path` (created if missing).
fn write_ok_list(path: &std::path::Path, prefix: &str, status: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut text = String::new();
    for (id, _) in status.iter().enumerate().filter(|(_, &s)| s == FILE_OK) {
        text.push_str(&run::file_name(prefix, id as u64));
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing --ok-list {}", path.display()))
}

/// Upper bound of `--parallel`: ringest's limit of data connections per MODE E transfer.
const MAX_PARALLEL: usize = 64;
/// Upper bound of `--block-size`: each connection builds one block in memory per send.
const MAX_BLOCK: usize = 64 << 20;

/// The compare table: one row per mode on the same files, so S, B and E read side by side.
fn print_compare(
    results: &[ScenarioResult],
    parallel: usize,
    files_ratio: &dyn Fn(Job) -> Option<f64>,
) {
    println!("== compare (same files; ratio = files/s over stream's)");
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "mode", "files/s", "MB/s", "p50 us", "p99 us", "data conns", "ratio"
    );
    for r in results {
        let p = &r.load;
        let (label, job) = match p.name.as_str() {
            "stream" => ("stream (S)".to_string(), Job::Stream),
            "block" => ("block (B)".to_string(), Job::Block),
            "eblock" => (format!("eblock (E, p={parallel})"), Job::Eblock),
            other => (other.to_string(), Job::Stream),
        };
        if let Some(f) = &p.fatal {
            println!("{label:<18} FATAL: {f}");
            continue;
        }
        println!(
            "{:<18} {:>10.1} {:>10.2} {:>10} {:>10} {:>10} {:>8}",
            label,
            p.files_per_s(),
            p.mb_per_s(),
            p.quantile_us(0.5),
            p.quantile_us(0.99),
            p.data_conns,
            files_ratio(job).map_or("n/a".into(), |r| format!("{r:.2}x"))
        );
    }
}

fn main() {
    let cli = Cli::parse();
    match real_main(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            if cli.json {
                println!("{}", json!({ "error": format!("{e:#}"), "exit_code": 2 }));
            }
            std::process::exit(2);
        }
    }
}

fn real_main(cli: &Cli) -> Result<i32> {
    let nofile = stats::raise_nofile();
    let size = SizeSpec::parse(&cli.size).map_err(anyhow::Error::msg)?;
    let server = (cli.host.as_str(), cli.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", cli.host))?
        .next()
        .with_context(|| format!("{} has no address", cli.host))?;
    let Some(password) = cli.password.clone() else {
        bail!("--password (or LOADGEN_PASSWORD) is required");
    };
    if cli.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    let sources = match &cli.source_addrs {
        Some(s) => parse_sources(s)?,
        None => Vec::new(),
    };
    let tls_mode = match (cli.tls, cli.tls_implicit) {
        (true, _) => Some(tls::Mode::Explicit),
        (_, true) => Some(tls::Mode::Implicit),
        _ => None,
    };
    let tls = tls::from_flags(
        tls_mode,
        cli.insecure,
        cli.ca.as_deref(),
        cli.tls_name.as_deref(),
        &cli.host,
        server.ip(),
    )?;
    if cli.parallel == 0 || cli.parallel > MAX_PARALLEL {
        bail!("--parallel must be between 1 and {MAX_PARALLEL}");
    }
    let block_size = parse_size(&cli.block_size)
        .map_err(anyhow::Error::msg)
        .context("--block-size")?;
    let block_size = usize::try_from(block_size)
        .ok()
        .filter(|b| (1..=MAX_BLOCK).contains(b))
        .with_context(|| format!("--block-size must be between 1 byte and {MAX_BLOCK} bytes"))?;
    if cli.scenario == Scenario::Eblock && tls.is_some() {
        bail!(
            "eblock: MODE E data connections over TLS are not supported (ringest refuses them \
             with 534; GridFTP protects them with DCAU instead); run eblock without --tls"
        );
    }
    let threads = cli
        .threads
        .unwrap_or_else(|| ringest::engine::thread::allowed_cpus().len())
        .clamp(1, cli.sessions.max(1));
    let cfg = Arc::new(RunCfg {
        server,
        user: cli.user.clone(),
        password,
        sessions: cli.sessions,
        threads,
        pin: match cli.pin {
            Pin::On => true,
            Pin::Off => false,
            Pin::Auto => threads >= ringest::engine::thread::allowed_cpus().len(),
        },
        size,
        seed: cli.seed.unwrap_or_else(random_seed),
        duration: Duration::from_secs(cli.duration.max(1)),
        op_timeout: Duration::from_secs(cli.op_timeout.max(1)),
        sources,
        epsv: cli.epsv,
        progress: !cli.json && !cli.quiet,
        nofile,
        allo: cli.allo,
        pipeline: cli.pipeline,
        tls,
        parallel: cli.parallel,
        block_size,
    });
    let base = cli.prefix.clone();
    let prefix_for = |name: &str, compare: bool| match (&base, compare) {
        (Some(p), false) => p.clone(),
        (Some(p), true) => format!("{p}-{name}"),
        (None, _) => format!("lg-{}-{name}", std::process::id()),
    };

    let jobs: Vec<Job> = match cli.scenario {
        Scenario::Stream => vec![Job::Stream],
        Scenario::StreamReconnect => vec![Job::Reconnect],
        Scenario::Block => vec![Job::Block],
        Scenario::Eblock => vec![Job::Eblock],
        Scenario::Compare if cfg.tls.is_some() => {
            eprintln!("loadgen: compare: eblock left out (MODE E has no TLS data connections)");
            vec![Job::Stream, Job::Block]
        }
        Scenario::Compare => vec![Job::Stream, Job::Block, Job::Eblock],
    };
    let expected = jobs.len();
    let compare = cli.scenario == Scenario::Compare;
    let mut results = Vec::new();
    for job in jobs {
        let r = run_scenario(&cfg, cli, job, &prefix_for(job.name(), compare))?;
        let fatal = r.load.fatal.is_some();
        results.push(r);
        if fatal {
            break;
        }
    }

    let fatal = results.iter().any(|r| r.load.fatal.is_some());
    let all_ok = !results.is_empty() && results.iter().all(ScenarioResult::success);
    let code = if fatal {
        2
    } else if all_ok && results.len() == expected {
        0
    } else {
        1
    };

    // Each mode's rate over stream's, from the compare results (`None` when either is missing).
    let ratio = |job: Job, f: &dyn Fn(&PhaseResult) -> f64| {
        let find = |name: &str| {
            results
                .iter()
                .find(|r| r.load.name == name && r.load.fatal.is_none())
        };
        let (s, x) = (find(Job::Stream.name())?, find(job.name())?);
        let (s, x) = (f(&s.load), f(&x.load));
        (s > 0.0).then(|| x / s)
    };
    let files_ratio = ratio(Job::Block, &|p| p.files_per_s());
    if cli.json {
        let mut out = if compare {
            let mut m = serde_json::Map::new();
            m.insert("scenario".into(), json!("compare"));
            for r in &results {
                m.insert(r.load.name.clone(), r.to_json());
            }
            m.insert("ratio_files_per_s".into(), json!(files_ratio));
            m.insert(
                "ratio_mb_per_s".into(),
                json!(ratio(Job::Block, &|p| p.mb_per_s())),
            );
            m.insert(
                "ratio_eblock_files_per_s".into(),
                json!(ratio(Job::Eblock, &|p| p.files_per_s())),
            );
            m.insert(
                "ratio_eblock_mb_per_s".into(),
                json!(ratio(Job::Eblock, &|p| p.mb_per_s())),
            );
            Value::Object(m)
        } else {
            results
                .first()
                .map(ScenarioResult::to_json)
                .unwrap_or(Value::Null)
        };
        if let Some(obj) = out.as_object_mut() {
            obj.insert("seed".into(), json!(cfg.seed));
            obj.insert("sessions".into(), json!(cfg.sessions));
            obj.insert("threads".into(), json!(cfg.threads));
            obj.insert("size".into(), json!(cli.size));
            obj.insert(
                "passive_command".into(),
                json!(if cfg.epsv { "EPSV" } else { "PASV" }),
            );
            obj.insert(
                "tls_mode".into(),
                json!(cfg.tls.as_ref().map(|t| t.mode.name())),
            );
            if matches!(cli.scenario, Scenario::Eblock | Scenario::Compare) {
                obj.insert("parallel".into(), json!(cfg.parallel));
                obj.insert("block_size".into(), json!(cfg.block_size));
            }
            obj.insert("exit_code".into(), json!(code));
        }
        println!("{out}");
    } else {
        println!(
            "loadgen {} -> {}{}: {} sessions on {} threads, {} files of {}, seed {}",
            match cli.scenario {
                Scenario::Stream => "stream",
                Scenario::StreamReconnect => "stream-reconnect",
                Scenario::Block => "block",
                Scenario::Eblock => "eblock",
                Scenario::Compare => "compare",
            },
            cfg.server,
            match &cfg.tls {
                Some(t) => format!(" (FTPS {}, name {})", t.mode.name(), t.name.to_str()),
                None => String::new(),
            },
            cfg.sessions,
            cfg.threads,
            cli.files,
            cli.size,
            cfg.seed
        );
        for r in &results {
            r.print_human();
        }
        if compare {
            print_compare(&results, cfg.parallel, &|job| {
                ratio(job, &|p| p.files_per_s())
            });
        }
    }
    Ok(code)
}
