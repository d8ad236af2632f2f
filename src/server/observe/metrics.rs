//! Prometheus metrics: per-core counters, summed when scraped, and a tiny HTTP endpoint.
//!
//! Each core owns one [`CoreMetrics`]. Its counters are atomics only so the scraper (on whatever core
//! serves `/metrics`) may read them; they are written by the owning core alone, with a plain
//! `load` + `store` (see [`inc`]), never a read-modify-write, so the hot path has no locked
//! instructions and no cache line ever bounces between cores. A scrape sums all cores; it may see
//! one core's counters a few increments apart from each other, which Prometheus tolerates.
//!
//! Names follow Prometheus conventions (`ringest_` prefix, `_total` counters, `_seconds`), with
//! low-cardinality labels only: direction, mode, login result, and the reply code of error replies.

use std::fmt::Write as _;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::fd::SharedFd;
use crate::engine::{net, op, spawn, time};

use super::labels::{Direction, Mode};

/// Adds one to a counter owned by the calling core. Only the owning core may write: a load and a
/// store are not atomic together, which is fine with a single writer and avoids a locked RMW.
#[inline]
pub fn inc(c: &AtomicU64) {
    add(c, 1);
}

/// Adds `n` to a counter owned by the calling core (see [`inc`]).
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts one from a gauge owned by the calling core, stopping at zero.
#[inline]
pub fn dec(c: &AtomicU64) {
    c.store(c.load(Relaxed).saturating_sub(1), Relaxed);
}

const DIRECTIONS: [(Direction, &str); 2] = [(Direction::In, "in"), (Direction::Out, "out")];
const MODES: [(Mode, &str); 2] = [(Mode::Stream, "stream"), (Mode::Block, "block")];

/// Upper bounds of the transfer duration histogram, seconds (`+Inf` is implicit).
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// The same bounds in nanoseconds, so observing compares integers.
const BUCKET_NS: [u64; 15] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

const FIRST_ERROR_CODE: u16 = 400;
const ERROR_CODES: usize = 200;

/// One core's counters. Written only by the owning core through its methods (or [`inc`]/[`add`]);
/// read by [`Registry::render`].
#[derive(Debug)]
pub struct CoreMetrics {
    pub core: usize,
    pub sessions_active: AtomicU64,
    pub sessions_total: AtomicU64,
    pub logins_ok: AtomicU64,
    pub logins_failed: AtomicU64,
    /// Password hashes actually verified (refused attempts never reach the hash).
    pub password_checks: AtomicU64,
    /// Completed files, by `[direction][mode]`.
    pub files: [[AtomicU64; 2]; 2],
    /// Bytes moved over data connections (completed or not), by `[direction][mode]`.
    pub bytes: [[AtomicU64; 2]; 2],
    /// Non-cumulative counts per duration bucket; the last one is `+Inf`.
    pub duration_buckets: [AtomicU64; 16],
    pub duration_sum_ns: AtomicU64,
    pub data_connections: AtomicU64,
    /// Upload bytes written with O_DIRECT (bypassing the page cache).
    pub direct_bytes: AtomicU64,
    /// Error replies, indexed by `code - 400` for codes 400..=599.
    pub replies: [AtomicU64; ERROR_CODES],
    pub transfers_failed: AtomicU64,
    /// Object-store parts (or single PUTs) being sent now (gauge).
    pub s3_parts_in_flight: AtomicU64,
    /// Bytes held in part buffers for the object store (gauge).
    pub s3_bytes_buffered: AtomicU64,
    /// Uploads waiting for buffer space under the memory cap (gauge).
    pub s3_uploads_waiting: AtomicU64,
    /// Store requests that failed for good (after their retries).
    pub s3_errors: AtomicU64,
}

impl CoreMetrics {
    /// All-zero counters for core `core`.
    pub fn new(core: usize) -> CoreMetrics {
        CoreMetrics {
            core,
            sessions_active: AtomicU64::new(0),
            sessions_total: AtomicU64::new(0),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            password_checks: AtomicU64::new(0),
            files: Default::default(),
            bytes: Default::default(),
            duration_buckets: Default::default(),
            duration_sum_ns: AtomicU64::new(0),
            data_connections: AtomicU64::new(0),
            direct_bytes: AtomicU64::new(0),
            replies: std::array::from_fn(|_| AtomicU64::new(0)),
            transfers_failed: AtomicU64::new(0),
            s3_parts_in_flight: AtomicU64::new(0),
            s3_bytes_buffered: AtomicU64::new(0),
            s3_uploads_waiting: AtomicU64::new(0),
            s3_errors: AtomicU64::new(0),
        }
    }

    /// Sets the object-store gauges of this core (its budget and part senders own the values).
    pub fn s3_gauges(&self, in_flight: u64, buffered: u64, waiting: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.s3_parts_in_flight.store(in_flight, Relaxed);
        self.s3_bytes_buffered.store(buffered, Relaxed);
        self.s3_uploads_waiting.store(waiting, Relaxed);
    }

    /// A store request failed after its retries.
    pub fn s3_error(&self) {
        inc(&self.s3_errors);
    }

    /// A control connection was accepted.
    pub fn session_opened(&self) {
        inc(&self.sessions_total);
        inc(&self.sessions_active);
    }

    /// A control connection ended.
    pub fn session_closed(&self) {
        dec(&self.sessions_active);
    }

    /// A login attempt finished.
    pub fn login(&self, ok: bool) {
        inc(if ok {
            &self.logins_ok
        } else {
            &self.logins_failed
        });
    }

    /// A password is about to be verified against its hash.
    pub fn password_check(&self) {
        inc(&self.password_checks);
    }

    /// Bytes of an upload written with O_DIRECT.
    pub fn direct_bytes(&self, n: u64) {
        if n > 0 {
            add(&self.direct_bytes, n);
        }
    }

    /// A data connection was established (accepted or connected).
    pub fn data_connection(&self) {
        inc(&self.data_connections);
    }

    /// Bytes moved on a data connection; may be called as data flows or once at the end.
    pub fn bytes(&self, dir: Direction, mode: Mode, n: u64) {
        add(&self.bytes[dir as usize][mode as usize], n);
    }

    /// A file transfer completed (226): counts the file and observes its duration. Its bytes are
    /// counted separately with [`bytes`](Self::bytes).
    pub fn file_done(&self, dir: Direction, mode: Mode, took: Duration) {
        inc(&self.files[dir as usize][mode as usize]);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(BUCKET_NS.len());
        inc(&self.duration_buckets[i]);
        add(&self.duration_sum_ns, ns);
    }

    /// A transfer failed or was aborted.
    pub fn transfer_failed(&self) {
        inc(&self.transfers_failed);
    }

    /// A reply was sent; only error replies (400..=599) are counted, by code.
    pub fn reply(&self, code: u16) {
        if let Some(c) = code
            .checked_sub(FIRST_ERROR_CODE)
            .and_then(|i| self.replies.get(usize::from(i)))
        {
            inc(c);
        }
    }
}

/// All cores' metrics. Cores register at start; the scraper sums them.
#[derive(Debug, Default)]
pub struct Registry {
    /// Locked only to register a core (at start) and to scrape: never on the hot path.
    cores: Mutex<Vec<Arc<CoreMetrics>>>,
}

/// Counters summed over all cores, as rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sessions_active: u64,
    pub sessions_total: u64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    pub password_checks: u64,
    pub files: [[u64; 2]; 2],
    pub bytes: [[u64; 2]; 2],
    pub duration_buckets: [u64; 16],
    pub duration_sum_ns: u64,
    pub data_connections: u64,
    pub direct_bytes: u64,
    pub replies: Vec<(u16, u64)>,
    pub transfers_failed: u64,
    pub s3_parts_in_flight: u64,
    pub s3_bytes_buffered: u64,
    pub s3_uploads_waiting: u64,
    pub s3_errors: u64,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Creates and registers the counters of core `core`; the core keeps the `Arc`.
    pub fn register(&self, core: usize) -> Arc<CoreMetrics> {
        let m = Arc::new(CoreMetrics::new(core));
        self.cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m.clone());
        m
    }

    /// Sums every core's counters.
    pub fn totals(&self) -> Totals {
        let cores = self.cores.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = Totals::default();
        let mut replies = [0u64; ERROR_CODES];
        let get = |c: &AtomicU64| c.load(Relaxed);
        for m in cores.iter() {
            t.sessions_active += get(&m.sessions_active);
            t.sessions_total += get(&m.sessions_total);
            t.logins_ok += get(&m.logins_ok);
            t.logins_failed += get(&m.logins_failed);
            t.password_checks += get(&m.password_checks);
            for d in 0..2 {
                for k in 0..2 {
                    t.files[d][k] += get(&m.files[d][k]);
                    t.bytes[d][k] += get(&m.bytes[d][k]);
                }
            }
            for (sum, c) in t.duration_buckets.iter_mut().zip(&m.duration_buckets) {
                *sum += get(c);
            }
            t.duration_sum_ns += get(&m.duration_sum_ns);
            t.data_connections += get(&m.data_connections);
            t.direct_bytes += get(&m.direct_bytes);
            for (sum, c) in replies.iter_mut().zip(&m.replies) {
                *sum += get(c);
            }
            t.transfers_failed += get(&m.transfers_failed);
            t.s3_parts_in_flight += get(&m.s3_parts_in_flight);
            t.s3_bytes_buffered += get(&m.s3_bytes_buffered);
            t.s3_uploads_waiting += get(&m.s3_uploads_waiting);
            t.s3_errors += get(&m.s3_errors);
        }
        t.replies = (FIRST_ERROR_CODE..)
            .zip(replies)
            .filter(|&(_, n)| n > 0)
            .collect();
        t
    }

    /// The metrics in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let t = self.totals();
        let mut out = String::with_capacity(4096);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP ringest_{name} {help}");
            let _ = writeln!(out, "# TYPE ringest_{name} {kind}");
        };
        head(
            &mut out,
            "sessions_active",
            "gauge",
            "Control connections open now.",
        );
        let _ = writeln!(out, "ringest_sessions_active {}", t.sessions_active);
        head(
            &mut out,
            "sessions_total",
            "counter",
            "Control connections accepted.",
        );
        let _ = writeln!(out, "ringest_sessions_total {}", t.sessions_total);
        head(
            &mut out,
            "logins_total",
            "counter",
            "Login attempts by result.",
        );
        let _ = writeln!(out, "ringest_logins_total{{result=\"ok\"}} {}", t.logins_ok);
        let _ = writeln!(
            out,
            "ringest_logins_total{{result=\"failed\"}} {}",
            t.logins_failed
        );
        head(
            &mut out,
            "password_checks_total",
            "counter",
            "Passwords verified against their hash (attempts refused by the per-IP limits are not).",
        );
        let _ = writeln!(out, "ringest_password_checks_total {}", t.password_checks);
        head(
            &mut out,
            "files_total",
            "counter",
            "Files transferred completely, by direction and transfer mode.",
        );
        for (d, dn) in DIRECTIONS {
            for (m, mn) in MODES {
                let _ = writeln!(
                    out,
                    "ringest_files_total{{direction=\"{dn}\",mode=\"{mn}\"}} {}",
                    t.files[d as usize][m as usize]
                );
            }
        }
        head(
            &mut out,
            "bytes_total",
            "counter",
            "Bytes moved over data connections, by direction and transfer mode.",
        );
        for (d, dn) in DIRECTIONS {
            for (m, mn) in MODES {
                let _ = writeln!(
                    out,
                    "ringest_bytes_total{{direction=\"{dn}\",mode=\"{mn}\"}} {}",
                    t.bytes[d as usize][m as usize]
                );
            }
        }
        head(
            &mut out,
            "transfer_duration_seconds",
            "histogram",
            "Duration of completed file transfers.",
        );
        let mut cumulative = 0u64;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += t.duration_buckets[i];
            let _ = writeln!(
                out,
                "ringest_transfer_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += t.duration_buckets[DURATION_BUCKETS.len()];
        let _ = writeln!(
            out,
            "ringest_transfer_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "ringest_transfer_duration_seconds_sum {}",
            t.duration_sum_ns as f64 / 1e9
        );
        let _ = writeln!(out, "ringest_transfer_duration_seconds_count {cumulative}");
        head(
            &mut out,
            "data_connections_total",
            "counter",
            "Data connections established.",
        );
        let _ = writeln!(out, "ringest_data_connections_total {}", t.data_connections);
        head(
            &mut out,
            "direct_io_bytes_total",
            "counter",
            "Upload bytes written with O_DIRECT, bypassing the page cache.",
        );
        let _ = writeln!(out, "ringest_direct_io_bytes_total {}", t.direct_bytes);
        head(
            &mut out,
            "replies_total",
            "counter",
            "Error replies (4xx and 5xx) sent, by code.",
        );
        for (code, n) in &t.replies {
            let _ = writeln!(out, "ringest_replies_total{{code=\"{code}\"}} {n}");
        }
        head(
            &mut out,
            "transfers_failed_total",
            "counter",
            "Transfers that failed or were aborted.",
        );
        let _ = writeln!(out, "ringest_transfers_failed_total {}", t.transfers_failed);
        for (name, kind, help, v) in [
            (
                "s3_parts_in_flight",
                "gauge",
                "Object-store parts and PUTs being sent.",
                t.s3_parts_in_flight,
            ),
            (
                "s3_bytes_buffered",
                "gauge",
                "Bytes held in part buffers for the object store.",
                t.s3_bytes_buffered,
            ),
            (
                "s3_uploads_waiting",
                "gauge",
                "Uploads waiting for buffer space under s3_memory_cap.",
                t.s3_uploads_waiting,
            ),
            (
                "s3_errors_total",
                "counter",
                "Object-store requests that failed after their retries.",
                t.s3_errors,
            ),
        ] {
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "ringest_{name} {v}");
        }
        out
    }
}

/// Largest request head read; a scraper's GET is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` forever (until the task is dropped or the listener fails
/// for good): one task per connection, one request per connection, then close. Meant to run as one
/// task on one core, off the FTP hot path; rendering takes a few microseconds.
pub async fn serve_http(listener: SharedFd, registry: Arc<Registry>) {
    serve_http_with(listener, registry, IO_TIMEOUT).await
}

async fn serve_http_with(listener: SharedFd, registry: Arc<Registry>, io_timeout: Duration) {
    loop {
        let mut accepts = op::accept::accept_multi(&listener);
        while let Some(res) = accepts.next().await {
            match res {
                Ok(fd) => {
                    spawn(handle(Rc::new(fd), registry.clone(), io_timeout)).detach();
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        // Out of descriptors or memory: back off instead of spinning.
                        time::sleep(Duration::from_millis(100)).await;
                    }
                    Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP) => {
                        tracing::error!(error = %e, "metrics listener unusable; endpoint stopped");
                        return;
                    }
                    _ => tracing::debug!(error = %e, "metrics accept failed"),
                },
            }
        }
        // The kernel ended the multishot (after an error, or a full CQ): arm it again.
    }
}

/// Why no request could be read.
enum ReadError {
    TooLarge,
    Io,
}

async fn handle(fd: SharedFd, registry: Arc<Registry>, io_timeout: Duration) {
    let (response, unread) = match time::timeout(io_timeout, read_head(&fd)).await {
        Ok(Ok(head)) => (respond(&head, &registry), false),
        Ok(Err(ReadError::TooLarge)) => (
            http_response("431 Request Header Fields Too Large", "request too large\n"),
            true,
        ),
        // Closed, failed or too slow: nobody to answer.
        Ok(Err(ReadError::Io)) | Err(_) => return,
    };
    if time::timeout(io_timeout, net::send_all(&fd, response, io_timeout))
        .await
        .is_ok_and(|(res, _)| res.is_ok())
        && unread
    {
        // Closing with unread input makes the kernel send a reset, which can destroy the response
        // before the client reads it; so half-close and discard what the client still sends.
        let _ = time::timeout(io_timeout, linger(&fd)).await;
    }
    // Dropping the last reference closes the connection.
}

/// Half-closes `fd` (FIN after the response) and reads until the client closes, discarding at
/// most a few requests' worth.
async fn linger(fd: &SharedFd) {
    let half_close = fd
        .try_clone()
        .map(std::net::TcpStream::from)
        .and_then(|s| s.shutdown(std::net::Shutdown::Write));
    if half_close.is_err() {
        return;
    }
    let mut budget = 8 * MAX_REQUEST;
    let mut buf = Vec::with_capacity(MAX_REQUEST);
    while budget > 0 {
        buf.clear();
        let (res, b) = op::recv::recv(fd, buf).await;
        buf = b;
        match res {
            Ok(n) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

/// Reads up to the end of the request head (`\r\n\r\n`), at most [`MAX_REQUEST`] bytes.
async fn read_head(fd: &SharedFd) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::with_capacity(MAX_REQUEST);
    loop {
        let before = buf.len();
        let (res, b) = op::recv::recv(fd, buf).await;
        buf = b;
        match res {
            Ok(0) => return Err(ReadError::Io),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Io),
        }
        // Look for the terminator only in what is new (plus 3 bytes of overlap).
        let from = before.saturating_sub(3);
        let tail = buf.get(from..).unwrap_or(&[]);
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            return Ok(buf);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(ReadError::TooLarge);
        }
    }
}

/// The response to one request head: `GET /metrics` (query string ignored) gets the metrics,
/// anything else 404.
fn respond(head: &[u8], registry: &Registry) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(&[]);
    let target = parts.next().unwrap_or(&[]);
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    if method == b"GET" && path == b"/metrics" {
        let body = registry.render();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    } else {
        http_response("404 Not Found", "not found; metrics are at /metrics\n")
    }
}

fn http_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsRawFd;

    use crate::engine::{block_on, blocking, RuntimeConfig};

    /// Parses rendered text into `name{labels}` -> value, checking every family has HELP and TYPE
    /// before its samples.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut samples = HashMap::new();
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                typed.insert(name.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap();
            let family = key.split('{').next().unwrap();
            let base = family
                .strip_suffix("_bucket")
                .or_else(|| family.strip_suffix("_sum"))
                .or_else(|| family.strip_suffix("_count"))
                .filter(|b| typed.contains(*b))
                .unwrap_or(family);
            assert!(typed.contains(base), "{family} has no TYPE before it");
            assert!(family.starts_with("ringest_"));
            samples.insert(key.to_owned(), value.parse::<f64>().unwrap());
        }
        samples
    }

    fn sample() -> Arc<Registry> {
        let reg = Arc::new(Registry::new());
        let a = reg.register(0);
        let b = reg.register(1);
        a.session_opened();
        a.session_opened();
        a.session_closed();
        b.session_opened();
        a.login(true);
        b.login(false);
        b.login(false);
        a.data_connection();
        a.bytes(Direction::In, Mode::Stream, 1000);
        b.bytes(Direction::In, Mode::Stream, 24);
        b.bytes(Direction::Out, Mode::Block, 7);
        a.file_done(Direction::In, Mode::Stream, Duration::from_micros(500));
        b.file_done(Direction::In, Mode::Stream, Duration::from_millis(700));
        b.file_done(Direction::Out, Mode::Block, Duration::from_secs(100));
        a.transfer_failed();
        a.reply(550);
        b.reply(550);
        a.reply(421);
        a.reply(226); // not an error: not counted
        a.reply(600); // out of range: ignored
        a.reply(399);
        reg
    }

    #[test]
    fn render_sums_cores_in_prometheus_text() {
        let reg = sample();
        let text = reg.render();
        let s = parse(&text);
        let v = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(v("ringest_sessions_active"), 2.0);
        assert_eq!(v("ringest_sessions_total"), 3.0);
        assert_eq!(v("ringest_logins_total{result=\"ok\"}"), 1.0);
        assert_eq!(v("ringest_logins_total{result=\"failed\"}"), 2.0);
        assert_eq!(v("ringest_data_connections_total"), 1.0);
        assert_eq!(
            v("ringest_bytes_total{direction=\"in\",mode=\"stream\"}"),
            1024.0
        );
        assert_eq!(
            v("ringest_bytes_total{direction=\"out\",mode=\"block\"}"),
            7.0
        );
        assert_eq!(
            v("ringest_bytes_total{direction=\"out\",mode=\"stream\"}"),
            0.0
        );
        assert_eq!(
            v("ringest_files_total{direction=\"in\",mode=\"stream\"}"),
            2.0
        );
        assert_eq!(
            v("ringest_files_total{direction=\"out\",mode=\"block\"}"),
            1.0
        );
        assert_eq!(
            v("ringest_transfer_duration_seconds_bucket{le=\"0.001\"}"),
            1.0
        );
        assert_eq!(
            v("ringest_transfer_duration_seconds_bucket{le=\"0.5\"}"),
            1.0
        );
        assert_eq!(v("ringest_transfer_duration_seconds_bucket{le=\"1\"}"), 2.0);
        assert_eq!(
            v("ringest_transfer_duration_seconds_bucket{le=\"60\"}"),
            2.0
        );
        assert_eq!(
            v("ringest_transfer_duration_seconds_bucket{le=\"+Inf\"}"),
            3.0
        );
        assert_eq!(v("ringest_transfer_duration_seconds_count"), 3.0);
        assert!((v("ringest_transfer_duration_seconds_sum") - 100.7005).abs() < 1e-9);
        assert_eq!(v("ringest_replies_total{code=\"550\"}"), 2.0);
        assert_eq!(v("ringest_replies_total{code=\"421\"}"), 1.0);
        assert!(!s.keys().any(|k| k.contains("code=\"226\"")));
        assert_eq!(v("ringest_transfers_failed_total"), 1.0);
        assert!(text.contains("# TYPE ringest_transfer_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE ringest_sessions_active gauge\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn empty_registry_renders_zeroes() {
        let s = parse(&Registry::new().render());
        assert_eq!(s["ringest_sessions_total"], 0.0);
        assert_eq!(s["ringest_transfer_duration_seconds_count"], 0.0);
        assert!(!s.keys().any(|k| k.starts_with("ringest_replies_total")));
    }

    #[test]
    fn single_writer_counters() {
        let c = AtomicU64::new(0);
        inc(&c);
        add(&c, 41);
        assert_eq!(c.load(Relaxed), 42);
        dec(&c);
        assert_eq!(c.load(Relaxed), 41);
        let z = AtomicU64::new(0);
        dec(&z);
        assert_eq!(z.load(Relaxed), 0);
    }

    fn cfg() -> RuntimeConfig {
        RuntimeConfig {
            entries: 64,
            buffers: 0,
            buffer_size: 4096,
            pipes: 0,
            pipe_size: 1 << 16,
        }
    }

    /// Sends `request` with a blocking std client (on the blocking pool) and returns the response.
    async fn fetch(addr: SocketAddr, request: Vec<u8>) -> String {
        blocking::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The server may answer (and close) before a too-large request is fully written.
            let _ = s.write_all(&request);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .unwrap()
    }

    #[test]
    fn http_endpoint_serves_metrics_and_404s() {
        let reg = sample();
        block_on(0, &cfg(), async move {
            let l = Rc::new(net::listen_exclusive("127.0.0.1:0".parse().unwrap(), 16).unwrap());
            let addr = net::local_addr(l.as_raw_fd()).unwrap();
            let server = spawn(serve_http_with(l, reg, Duration::from_millis(300)));

            let r = fetch(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("Content-Length: {}", body.len())),
                "{head}"
            );
            assert_eq!(parse(body)["ringest_sessions_total"], 3.0);

            let r = fetch(addr, b"GET /metrics?x=1 HTTP/1.0\n\n".to_vec()).await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");

            for req in [
                &b"GET / HTTP/1.1\r\n\r\n"[..],
                b"POST /metrics HTTP/1.1\r\n\r\n",
                b"GET /metricsx HTTP/1.1\r\n\r\n",
                b"\r\n\r\n",
            ] {
                let r = fetch(addr, req.to_vec()).await;
                assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
            }

            let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
            big.resize(MAX_REQUEST + 100, b'a');
            let r = fetch(addr, big).await;
            assert!(r.starts_with("HTTP/1.1 431"), "{r}");

            // A client that never finishes its request is dropped after the timeout.
            let started = std::time::Instant::now();
            let r = fetch(addr, b"GET /metrics HTTP/1.1\r\n".to_vec()).await;
            assert_eq!(r, "");
            assert!(started.elapsed() >= Duration::from_millis(250));

            // Still serving after all that.
            let r = fetch(addr, b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()).await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            drop(server);
        })
        .unwrap();
    }
}
