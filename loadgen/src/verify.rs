//! Verification after a run: every file that was stored is compared byte for byte with its
//! deterministic content, either by downloading it (RETR in MODE S) or on disk.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

use crate::content;
use crate::run::{self, Job, RunCfg};

pub struct VerifyResult {
    pub mode: &'static str,
    pub checked: u64,
    pub verified: u64,
    pub mismatched: u64,
    /// Files that could not be checked (missing, RETR failed, unreadable).
    pub unverifiable: u64,
    pub elapsed: Duration,
    pub samples: Vec<String>,
}

impl VerifyResult {
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "checked": self.checked,
            "verified": self.verified,
            "mismatched": self.mismatched,
            "unverifiable": self.unverifiable,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "samples": self.samples,
        })
    }

    pub fn print_human(&self) {
        println!(
            "verify      ({}) {} verified, {} mismatched, {} unverifiable of {} in {:.2} s",
            self.mode,
            self.verified,
            self.mismatched,
            self.unverifiable,
            self.checked,
            self.elapsed.as_secs_f64()
        );
        for s in &self.samples {
            println!("  e.g.      {s}");
        }
    }
}

/// Downloads every file in `ids` and compares it.
pub fn verify_download(cfg: &Arc<RunCfg>, prefix: &str, ids: Vec<u64>) -> Result<VerifyResult> {
    let checked = ids.len() as u64;
    let r = run::run_phase(cfg, Job::Retr, prefix, ids)?;
    let mismatched = r.stats.mismatched;
    Ok(VerifyResult {
        mode: "download",
        checked,
        verified: r.ok,
        mismatched,
        unverifiable: checked - r.ok - mismatched,
        elapsed: r.elapsed,
        samples: r.stats.samples,
    })
}

/// Compares the files under `dir` (the run's prefix directory on the server's disk).
pub fn verify_dir(cfg: &RunCfg, dir: &Path, ids: &[u64]) -> VerifyResult {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let verified = AtomicU64::new(0);
    let mismatched = AtomicU64::new(0);
    let samples = Mutex::new(Vec::new());
    let note = |s: String| {
        if let Ok(mut v) = samples.lock() {
            if v.len() < 8 {
                v.push(s);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..cfg.threads.max(1) {
            scope.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                let mut scratch = Vec::new();
                loop {
                    if start.elapsed() >= cfg.duration {
                        break;
                    }
                    let Some(&id) = ids.get(next.fetch_add(1, Relaxed)) else {
                        break;
                    };
                    let path = dir.join(format!("f{id}"));
                    let size = cfg.size.size_of(cfg.seed, id);
                    match compare_file(&path, cfg.seed, id, size, &mut buf, &mut scratch) {
                        Ok(None) => {
                            verified.fetch_add(1, Relaxed);
                        }
                        Ok(Some(m)) => {
                            mismatched.fetch_add(1, Relaxed);
                            note(format!("{}: {m}", path.display()));
                        }
                        Err(e) => {
                            note(format!("{}: {e}", path.display()));
                        }
                    }
                }
            });
        }
    });
    let (v, m) = (verified.load(Relaxed), mismatched.load(Relaxed));
    VerifyResult {
        mode: "dir",
        checked: ids.len() as u64,
        verified: v,
        mismatched: m,
        // Unreadable files and files skipped because the time ran out.
        unverifiable: ids.len() as u64 - v - m,
        elapsed: start.elapsed(),
        samples: samples.into_inner().unwrap_or_default(),
    }
}

fn compare_file(
    path: &Path,
    seed: u64,
    id: u64,
    size: u64,
    buf: &mut [u8],
    scratch: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let mut off = 0u64;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        let want = size.saturating_sub(off).min(n as u64) as usize;
        if let Some(i) = content::first_mismatch(seed, id, off, &buf[..want], scratch) {
            return Ok(Some(format!(
                "first differing byte at offset {}",
                off + i as u64
            )));
        }
        if want < n {
            return Ok(Some(format!("longer than the {size} bytes sent")));
        }
        off += n as u64;
    }
    if off != size {
        return Ok(Some(format!("{off} bytes, expected {size}")));
    }
    Ok(None)
}
