//! Counters shared by all threads (atomics, read by the progress line), per-thread detail (latency
//! histogram, errors) merged at the end, and the report in human and JSON form.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::ftp::Fail;

/// State of one file.
pub const FILE_PENDING: u8 = 0;
pub const FILE_OK: u8 = 1;
pub const FILE_FAILED: u8 = 2;

/// Counters every thread updates.
pub struct Shared {
    /// Next index into the run's file list.
    pub next: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
    pub data_conns: AtomicU64,
    pub ctrl_conns: AtomicU64,
    /// MODE E files whose payload went over more than one data connection: shows whether
    /// `--parallel` really spread the blocks (a file of one block cannot be spread).
    pub spread_files: AtomicU64,
    /// TLS handshakes that completed on control and data connections, the data handshakes that
    /// resumed a session, and handshakes that failed (control or data).
    pub tls_ctrl: AtomicU64,
    pub tls_data: AtomicU64,
    pub tls_data_resumed: AtomicU64,
    pub tls_failed: AtomicU64,
    /// The first control connection's TLS version and cipher suite.
    pub tls_version: Mutex<Option<String>>,
    /// Per file: pending, ok or failed (indexed by position in the run's file list).
    pub status: Vec<AtomicU8>,
    /// Set on a fatal error: sessions stop taking files.
    pub stop: AtomicBool,
    pub fatal: Mutex<Option<String>>,
    /// Per-thread details, pushed when each thread ends.
    pub threads: Mutex<Vec<ThreadStats>>,
}

impl Shared {
    pub fn new(files: usize) -> Shared {
        Shared {
            next: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            data_conns: AtomicU64::new(0),
            ctrl_conns: AtomicU64::new(0),
            spread_files: AtomicU64::new(0),
            tls_ctrl: AtomicU64::new(0),
            tls_data: AtomicU64::new(0),
            tls_data_resumed: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            tls_version: Mutex::new(None),
            status: (0..files).map(|_| AtomicU8::new(FILE_PENDING)).collect(),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The TLS counts so far (`mode`: explicit or implicit).
    pub fn tls_counts(&self, mode: &'static str) -> TlsCounts {
        TlsCounts {
            mode,
            control_handshakes: self.tls_ctrl.load(Relaxed),
            data_handshakes: self.tls_data.load(Relaxed),
            data_resumed: self.tls_data_resumed.load(Relaxed),
            handshake_failures: self.tls_failed.load(Relaxed),
            version: self.tls_version.lock().ok().and_then(|v| v.clone()),
        }
    }

    pub fn set_fatal(&self, msg: String) {
        self.stop.store(true, Relaxed);
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(msg);
        }
    }
}

/// What one thread saw.
pub struct ThreadStats {
    /// Per-file latency in microseconds (STOR sent to final reply; RETR for verification).
    pub hist: Histogram<u64>,
    pub by_code: BTreeMap<u16, u64>,
    pub by_kind: BTreeMap<String, u64>,
    /// The first few failures in full, for diagnosis.
    pub samples: Vec<String>,
    pub retries: u64,
    pub mismatched: u64,
    pub eaddrnotavail: u64,
    pub emfile: u64,
}

const MAX_SAMPLES: usize = 8;

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            hist: new_hist(),
            by_code: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            samples: Vec::new(),
            retries: 0,
            mismatched: 0,
            eaddrnotavail: 0,
            emfile: 0,
        }
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 us .. 1 hour at 3 significant digits; larger values saturate.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl ThreadStats {
    pub fn record_error(&mut self, f: &Fail) {
        match f {
            Fail::Reply { code, .. } => *self.by_code.entry(*code).or_default() += 1,
            _ => *self.by_kind.entry(f.kind()).or_default() += 1,
        }
        match f.raw_os_error() {
            Some(libc::EADDRNOTAVAIL) => self.eaddrnotavail += 1,
            Some(libc::EMFILE) | Some(libc::ENFILE) => self.emfile += 1,
            _ => {}
        }
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(f.describe());
        }
    }

    pub fn record_kind(&mut self, kind: &str, detail: String) {
        *self.by_kind.entry(kind.to_string()).or_default() += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(detail);
        }
    }

    pub fn merge(&mut self, o: ThreadStats) {
        let _ = self.hist.add(&o.hist);
        for (k, v) in o.by_code {
            *self.by_code.entry(k).or_default() += v;
        }
        for (k, v) in o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < MAX_SAMPLES {
                self.samples.push(s);
            }
        }
        self.retries += o.retries;
        self.mismatched += o.mismatched;
        self.eaddrnotavail += o.eaddrnotavail;
        self.emfile += o.emfile;
    }
}

/// What TLS did in a phase.
#[derive(Clone, Debug, Default)]
pub struct TlsCounts {
    pub mode: &'static str,
    pub control_handshakes: u64,
    pub data_handshakes: u64,
    /// Data handshakes that resumed their control connection's session.
    pub data_resumed: u64,
    pub handshake_failures: u64,
    pub version: Option<String>,
}

/// The outcome of one phase (a load scenario or a download verification).
pub struct PhaseResult {
    pub name: String,
    pub prefix: String,
    pub files: u64,
    pub ok: u64,
    pub failed: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub data_conns: u64,
    /// MODE E only (`None` otherwise): files whose blocks went over more than one connection.
    pub spread_files: Option<u64>,
    pub ctrl_conns: u64,
    /// `None` without TLS.
    pub tls: Option<TlsCounts>,
    pub stats: ThreadStats,
    pub fatal: Option<String>,
    pub notes: Vec<String>,
    /// Per-file status, for choosing what to verify.
    pub status: Vec<u8>,
}

impl PhaseResult {
    /// A phase that could not start (setup failed): nothing attempted, the reason as `fatal`.
    pub fn fatal_only(name: &str, prefix: &str, files: u64, msg: String) -> PhaseResult {
        PhaseResult {
            name: name.to_string(),
            prefix: prefix.to_string(),
            files,
            ok: 0,
            failed: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            data_conns: 0,
            spread_files: None,
            ctrl_conns: 0,
            tls: None,
            stats: ThreadStats::default(),
            fatal: Some(msg),
            notes: Vec::new(),
            status: Vec::new(),
        }
    }

    pub fn not_attempted(&self) -> u64 {
        self.files.saturating_sub(self.ok + self.failed)
    }

    pub fn files_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.stats.hist.is_empty() {
            0
        } else {
            self.stats.hist.value_at_quantile(q)
        }
    }

    pub fn to_json(&self) -> Value {
        let h = &self.stats.hist;
        let codes: serde_json::Map<String, Value> = self
            .stats
            .by_code
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let kinds: serde_json::Map<String, Value> = self
            .stats
            .by_kind
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let tls = self.tls.clone().unwrap_or_default();
        json!({
            "scenario": self.name,
            "prefix": self.prefix,
            "files": self.files,
            "files_ok": self.ok,
            "files_failed": self.failed,
            "files_not_attempted": self.not_attempted(),
            "bytes": self.bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "files_per_s": self.files_per_s(),
            "mb_per_s": self.mb_per_s(),
            "latency_us": {
                "count": h.len(),
                "p50": self.quantile_us(0.5),
                "p90": self.quantile_us(0.9),
                "p99": self.quantile_us(0.99),
                "p999": self.quantile_us(0.999),
                "max": if h.is_empty() { 0 } else { h.max() },
            },
            "data_connections": self.data_conns,
            "files_spread_over_connections": self.spread_files,
            "control_connections": self.ctrl_conns,
            "tls": self.tls.as_ref().map(|t| t.mode),
            "tls_version": tls.version,
            "tls_control_handshakes": tls.control_handshakes,
            "tls_data_handshakes": tls.data_handshakes,
            "tls_data_resumed": tls.data_resumed,
            "tls_handshake_failures": tls.handshake_failures,
            "retries": self.stats.retries,
            "errors_by_code": codes,
            "errors_by_kind": kinds,
            "error_samples": self.stats.samples,
            "fatal": self.fatal,
            "notes": self.notes,
        })
    }

    pub fn print_human(&self) {
        let h = &self.stats.hist;
        println!("== {} (prefix {})", self.name, self.prefix);
        println!(
            "files       {} ok / {} failed / {} not attempted (of {})",
            self.ok,
            self.failed,
            self.not_attempted(),
            self.files
        );
        println!(
            "bytes       {} ({:.2} MB)",
            self.bytes,
            self.bytes as f64 / 1e6
        );
        println!("elapsed     {:.3} s", self.elapsed.as_secs_f64());
        println!(
            "rate        {:.1} files/s, {:.2} MB/s",
            self.files_per_s(),
            self.mb_per_s()
        );
        if !h.is_empty() {
            println!(
                "latency us  p50 {}  p90 {}  p99 {}  p999 {}  max {}",
                self.quantile_us(0.5),
                self.quantile_us(0.9),
                self.quantile_us(0.99),
                self.quantile_us(0.999),
                h.max()
            );
        }
        println!(
            "connections control {}, data {}",
            self.ctrl_conns, self.data_conns
        );
        if let Some(n) = self.spread_files {
            println!("mode e      {n} files with blocks over more than one data connection");
        }
        if let Some(t) = &self.tls {
            println!(
                "tls         {} ({}): handshakes control {}, data {} ({} resumed), {} failed",
                t.mode,
                t.version.as_deref().unwrap_or("no handshake"),
                t.control_handshakes,
                t.data_handshakes,
                t.data_resumed,
                t.handshake_failures
            );
        }
        if self.stats.retries > 0 {
            println!("retries     {}", self.stats.retries);
        }
        if self.stats.by_code.is_empty() && self.stats.by_kind.is_empty() {
            println!("errors      none");
        } else {
            for (c, n) in &self.stats.by_code {
                println!("error reply {c}: {n}");
            }
            for (k, n) in &self.stats.by_kind {
                println!("error       {k}: {n}");
            }
            for s in &self.stats.samples {
                println!("  e.g.      {s}");
            }
        }
        if let Some(f) = &self.fatal {
            println!("FATAL       {f}");
        }
        for n in &self.notes {
            println!("NOTE: {n}");
        }
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return want.rlim_cur;
        }
    }
    r.rlim_cur
}

/// NOTE lines naming client-side limits that were hit.
pub fn limit_notes(stats: &ThreadStats, nofile: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if stats.eaddrnotavail > 0 {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
            .unwrap_or_else(|_| "?".into());
        notes.push(format!(
            "client ran out of ephemeral ports (EADDRNOTAVAIL x{}; ip_local_port_range {range}): spread over more \
             --source-addrs, or the TIME_WAIT ceiling (~14k new connections/s per source address) was hit",
            stats.eaddrnotavail
        ));
    }
    if stats.emfile > 0 {
        notes.push(format!(
            "client ran out of file descriptors (EMFILE/ENFILE x{}; RLIMIT_NOFILE {nofile}): lower --sessions or raise the hard limit",
            stats.emfile
        ));
    }
    notes
}
