//! Integration-test harness for ringest.
//!
//! * [`Server`] starts `ringest serve` on `127.0.0.1:0` with its own temporary root and
//!   kills it (by PID) on drop. When a test panics while a `Server` is alive, the tail of
//!   the server's stderr is printed.
//! * Deterministic test data ([`write_test_file`], [`test_bytes`]) and byte-exact
//!   comparison with short messages ([`assert_same_file`], [`assert_file_content`]).
//! * [`run_cmd`]: run an external client (curl, lftp, python3) with a hard timeout.
//! * [`Ftp`]: a tiny hand-written FTP client (control connection + PASV/EPSV/PORT/EPRT
//!   data connections) used for protocol, bad-input and concurrency tests.
//!
//! Set `RINGEST_BIN=/path/to/server` to run the suite against another binary.
#![allow(dead_code)]

pub mod cluster;
pub mod garage;
pub mod s3;

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const START_TIMEOUT: Duration = Duration::from_secs(20);
pub const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// `--data-path` of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPath {
    Fixed,
    Splice,
}

impl DataPath {
    pub const ALL: [DataPath; 2] = [DataPath::Fixed, DataPath::Splice];

    pub fn as_str(self) -> &'static str {
        match self {
            DataPath::Fixed => "fixed",
            DataPath::Splice => "splice",
        }
    }
}

/// Runs `f` once per data path (fixed, then splice). Both are always run; if either
/// panics, a summary panic names the failing data path(s) and their messages.
pub fn for_each_data_path(mut f: impl FnMut(DataPath)) {
    let mut failures = Vec::new();
    for dp in DataPath::ALL {
        eprintln!("=== data path: {} ===", dp.as_str());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(dp)));
        if let Err(e) = r {
            failures.push(format!(
                "[--data-path {}] {}",
                dp.as_str(),
                panic_message(&*e)
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "failed for {} data path(s):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

pub fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub data_path: Option<DataPath>,
    pub passive_ports: Option<(u16, u16)>,
    pub threads: u32,
    pub user: String,
    pub pass: String,
    pub extra_args: Vec<String>,
    /// Start the server with this RLIMIT_NOFILE (soft and hard).
    pub nofile: Option<u64>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            data_path: None,
            passive_ports: None,
            threads: 2,
            user: "tester".to_string(),
            pass: "s3cret-Pw".to_string(),
            extra_args: Vec::new(),
            nofile: None,
        }
    }
}

impl ServerOpts {
    pub fn data_path(mut self, dp: DataPath) -> Self {
        self.data_path = Some(dp);
        self
    }
}

/// The path of the server binary under test.
pub fn server_bin() -> PathBuf {
    match std::env::var_os("RINGEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ringest")),
    }
}

/// A running `ringest serve`.
///
/// Directory layout (all inside one private temp dir `base`):
/// `base/up/root-XXXX` is the FTP root (`root`), `base/up` is the root's parent (it
/// should contain nothing but the root), `base/scratch` holds client-side files, and
/// `base/server-stderr.log` the server's stderr.
pub struct Server {
    pub addr: SocketAddr,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub opts: ServerOpts,
    /// The FTP root (`/` for clients). Declared before `base` so it is dropped first.
    pub root: tempfile::TempDir,
    /// Lines the server printed on stdout (collected in the background).
    pub stdout_lines: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
    child: Child,
    base: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerOpts::default())
    }

    pub fn start_dp(dp: DataPath) -> Server {
        Server::start_with(ServerOpts::default().data_path(dp))
    }

    pub fn start_with(opts: ServerOpts) -> Server {
        let base = tempfile::Builder::new()
            .prefix("ringest-it-")
            .tempdir()
            .expect("create temp dir");
        fs::create_dir(base.path().join("up")).unwrap();
        fs::create_dir(base.path().join("scratch")).unwrap();
        let root = tempfile::Builder::new()
            .prefix("root-")
            .tempdir_in(base.path().join("up"))
            .expect("create root dir");
        let stderr_path = base.path().join("server-stderr.log");
        let stderr_file = File::create(&stderr_path).unwrap();

        let bin = server_bin();
        let mut cmd = match opts.nofile {
            // `ulimit -n` in sh sets the soft and the hard limit; exec keeps the PID.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(root.path())
            .arg("--user")
            .arg(&opts.user)
            .arg("--password")
            .arg(&opts.pass)
            .arg("--threads")
            .arg(opts.threads.to_string());
        if let Some(dp) = opts.data_path {
            cmd.arg("--data-path").arg(dp.as_str());
        }
        if let Some((lo, hi)) = opts.passive_ports {
            cmd.arg("--passive-ports").arg(format!("{lo}-{hi}"));
        }
        cmd.args(&opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file))
            .env("RUST_BACKTRACE", "1");
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn server {}: {e}", bin.display()));

        let (lines, rx) = collect_stdout(child.stdout.take().unwrap());

        let deadline = Instant::now() + START_TIMEOUT;
        let addr: SocketAddr = loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            match rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ringest: listening on ") {
                        match rest.trim().parse() {
                            Ok(a) => break a,
                            Err(e) => {
                                let _ = child.kill();
                                let _ = child.wait();
                                panic!(
                                    "server printed an unparsable listening line {line:?}: {e}\n\
                                     command: {desc}\nstderr:\n{}",
                                    tail_of_file(&stderr_path, 8192)
                                );
                            }
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "server did not print 'ringest: listening on ADDR' on stdout within {:?}\n\
                         command: {desc}\nstdout so far: {:?}\nstderr:\n{}",
                        START_TIMEOUT,
                        lines.lock().unwrap(),
                        tail_of_file(&stderr_path, 8192)
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait();
                    panic!(
                        "server closed stdout / exited before printing the listening line \
                         (exit status: {status:?})\ncommand: {desc}\nstdout: {:?}\nstderr:\n{}",
                        lines.lock().unwrap(),
                        tail_of_file(&stderr_path, 8192)
                    );
                }
            }
        };
        eprintln!("server started: {desc} -> {addr}");
        Server {
            addr,
            port: addr.port(),
            user: opts.user.clone(),
            pass: opts.pass.clone(),
            opts,
            root,
            stdout_lines: lines,
            stderr_path,
            child,
            base,
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The directory containing the root; it should contain nothing but the root.
    pub fn root_parent(&self) -> PathBuf {
        self.base.path().join("up")
    }

    /// The private temp dir containing `up/` (root's parent), `scratch/` and the log.
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// A client-side scratch directory (not visible via FTP).
    pub fn scratch(&self) -> PathBuf {
        self.base.path().join("scratch")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ftp://user:pass@127.0.0.1:PORT/path`
    pub fn url(&self, path: &str) -> String {
        format!(
            "ftp://{}:{}@127.0.0.1:{}/{}",
            self.user,
            self.pass,
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// Last `n` bytes of the server's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        tail_of_file(&self.stderr_path, n)
    }

    /// Panics if the server process has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("server process exited unexpectedly: {status}");
        }
    }

    /// Opens a control connection and logs in.
    pub fn login(&self) -> Ftp {
        let mut c = Ftp::connect(self.addr);
        c.login(&self.user, &self.pass);
        c
    }

    /// Proves the server still works: fresh session, login, upload, check on disk.
    pub fn assert_serves_new_session(&self, tag: &str) {
        let data = test_bytes(10_000, 0xa11ce);
        let name = format!("alive-check-{tag}.bin");
        let mut c = self.login();
        c.cmd_expect("TYPE I", 200);
        c.stor(&name, &data, DataMode::Pasv);
        let reply = c.cmd("QUIT");
        assert_eq!(reply.code, 221, "QUIT: {}\n{}", reply, c.transcript());
        assert_file_content(
            &self.root().join(&name),
            &data,
            &format!("alive check {tag}"),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- ringest server {} stdout lines: {:?}",
                self.addr,
                self.stdout_lines
                    .lock()
                    .map(|l| l.clone())
                    .unwrap_or_default()
            );
            eprintln!(
                "---- ringest server {} stderr (tail) ----\n{}\n---- end of server stderr ----",
                self.addr,
                self.stderr_tail(8192)
            );
        }
    }
}

pub fn tail_of_file(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let start = b.len().saturating_sub(n);
            let mut s = String::from_utf8_lossy(&b[start..]).into_owned();
            if start > 0 {
                s.insert_str(0, "[...]");
            }
            s
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

// ---------------------------------------------------------------------------
// External commands
// ---------------------------------------------------------------------------

/// Panics with a clear message if `tool` is not in PATH. Tests that need a client
/// must fail (not pass silently) when it is missing.
pub fn require_tool(tool: &str) {
    if which(tool).is_none() {
        panic!(
            "required tool `{tool}` not found in PATH; this test cannot run without it \
             (install it: apt-get install -y lftp curl python3 tnftp ncftp systemd; .ci/run does this)"
        );
    }
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

pub struct CmdOutput {
    pub desc: String,
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.map(|s| s.success()).unwrap_or(false)
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\n{} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.desc,
            if self.timed_out {
                "TIMED OUT (killed)".to_string()
            } else {
                format!("exit status {:?}", self.status)
            },
            self.elapsed,
            truncate_middle(&self.stdout_str(), 4000),
            truncate_middle(&self.stderr_str(), 4000),
        )
    }

    /// Panics (with the full command, its output and `what`) unless it exited 0.
    pub fn assert_success(&self, what: &str) -> &Self {
        if !self.success() {
            panic!("{what}: client command failed\n{}", self.describe());
        }
        self
    }
}

pub fn truncate_middle(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut a = max / 2;
    while !s.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = s.len() - max / 2;
    while !s.is_char_boundary(b) {
        b += 1;
    }
    format!("{}\n[... {} bytes cut ...]\n{}", &s[..a], b - a, &s[b..])
}

/// Runs `cmd` (stdin = /dev/null, stdout/stderr captured) and kills its process group
/// if it does not finish within `timeout`.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    run_cmd_input(cmd, None, timeout)
}

/// Like [`run_cmd`], with `input` written to the command's stdin (then closed): drives
/// interactive clients (tnftp, ncftp) from a script, the timeout turning a hang into a
/// failure.
pub fn run_cmd_input(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    let desc = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // Kill the process group we created for this child (pid == pgid).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            let _ = child.kill();
            break child.wait().ok();
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Make sure no leftover grandchild keeps the pipes open.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    CmdOutput {
        desc,
        status,
        timed_out,
        elapsed: start.elapsed(),
        stdout,
        stderr,
    }
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

const BLOCK: usize = 1 << 20;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn block_mix(seed: u64, index: u64) -> u64 {
    let mut s = seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5bd1_e995;
    splitmix64(&mut s)
}

/// Base pseudo-random words (little-endian bytes) for `len` bytes (rounded up to 8).
fn base_bytes(len: usize, seed: u64) -> Vec<u8> {
    let words = len.div_ceil(8);
    let mut v = Vec::with_capacity(words * 8);
    let mut s = seed;
    for _ in 0..words {
        v.extend_from_slice(&splitmix64(&mut s).to_le_bytes());
    }
    v
}

fn mix_block(base: &[u8], out: &mut Vec<u8>, len: usize, seed: u64, index: u64) {
    let m = block_mix(seed, index).to_le_bytes();
    out.clear();
    out.extend(base[..len].iter().enumerate().map(|(i, b)| b ^ m[i & 7]));
}

/// Deterministic pseudo-random content: block `i` (1 MiB) is a fixed pseudo-random
/// block XORed with a word derived from `i`, so misplaced/duplicated chunks are detected.
/// `test_bytes(n, s)` is always a prefix of `test_bytes(m, s)` for n <= m, and equals
/// the content written by `write_test_file(_, n, s)`.
pub fn test_bytes(size: usize, seed: u64) -> Vec<u8> {
    let base = base_bytes(size.min(BLOCK), seed);
    let mut v = Vec::with_capacity(size);
    let mut buf = Vec::new();
    let mut index = 0u64;
    while v.len() < size {
        let n = (size - v.len()).min(BLOCK);
        mix_block(&base, &mut buf, n, seed, index);
        v.extend_from_slice(&buf);
        index += 1;
    }
    v
}

/// Writes `size` bytes of deterministic test data (see [`test_bytes`]) to `path`.
pub fn write_test_file(path: &Path, size: u64, seed: u64) {
    let base = base_bytes((size as usize).min(BLOCK), seed);
    let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut w = io::BufWriter::with_capacity(BLOCK, f);
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(BLOCK);
    let mut index = 0u64;
    while written < size {
        let n = ((size - written) as usize).min(BLOCK);
        mix_block(&base, &mut buf, n, seed, index);
        w.write_all(&buf).unwrap();
        written += n as u64;
        index += 1;
    }
    w.flush().unwrap();
}

/// Creates `dir/name` with `size` bytes of test data and returns its path.
pub fn make_test_file(dir: &Path, name: &str, size: u64, seed: u64) -> PathBuf {
    let p = dir.join(name);
    write_test_file(&p, size, seed);
    p
}

/// Compares two files byte for byte; `Err` holds a short description (sizes and the
/// first differing offset), never the content.
pub fn compare_files(expected: &Path, actual: &Path) -> Result<(), String> {
    let me = fs::metadata(expected)
        .map_err(|e| format!("cannot stat expected {}: {e}", expected.display()))?;
    let ma = fs::metadata(actual).map_err(|e| format!("cannot stat {}: {e}", actual.display()))?;
    if !ma.is_file() {
        return Err(format!("{} is not a regular file", actual.display()));
    }
    let mut fe = BufReader::with_capacity(BLOCK, File::open(expected).map_err(|e| e.to_string())?);
    let mut fa = BufReader::with_capacity(BLOCK, File::open(actual).map_err(|e| e.to_string())?);
    let mut be = vec![0u8; 256 * 1024];
    let mut ba = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    loop {
        let ne = read_full(&mut fe, &mut be).map_err(|e| e.to_string())?;
        let na = read_full(&mut fa, &mut ba).map_err(|e| e.to_string())?;
        let n = ne.min(na);
        if let Some(i) = (0..n).find(|&i| be[i] != ba[i]) {
            return Err(format!(
                "{} differs from {}: sizes {} (expected) vs {} (actual); first difference at \
                 offset {} (expected byte 0x{:02x}, got 0x{:02x})",
                actual.display(),
                expected.display(),
                me.len(),
                ma.len(),
                offset + i as u64,
                be[i],
                ba[i]
            ));
        }
        if ne != na {
            return Err(format!(
                "{} differs from {}: sizes {} (expected) vs {} (actual); identical up to offset {}",
                actual.display(),
                expected.display(),
                me.len(),
                ma.len(),
                offset + n as u64
            ));
        }
        if ne == 0 {
            return Ok(());
        }
        offset += ne as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn assert_same_file(expected: &Path, actual: &Path, ctx: &str) {
    if let Err(e) = compare_files(expected, actual) {
        panic!("{ctx}: {e}");
    }
}

/// Describes the first difference between two byte slices (short message).
pub fn diff_bytes(expected: &[u8], actual: &[u8]) -> Option<String> {
    let n = expected.len().min(actual.len());
    if let Some(i) = (0..n).find(|&i| expected[i] != actual[i]) {
        return Some(format!(
            "sizes {} (expected) vs {} (actual); first difference at offset {} (expected \
             byte 0x{:02x}, got 0x{:02x})",
            expected.len(),
            actual.len(),
            i,
            expected[i],
            actual[i]
        ));
    }
    if expected.len() != actual.len() {
        return Some(format!(
            "sizes {} (expected) vs {} (actual); identical up to offset {}",
            expected.len(),
            actual.len(),
            n
        ));
    }
    None
}

pub fn assert_bytes_eq(expected: &[u8], actual: &[u8], ctx: &str) {
    if let Some(d) = diff_bytes(expected, actual) {
        panic!("{ctx}: data differs: {d}");
    }
}

pub fn assert_file_content(path: &Path, expected: &[u8], ctx: &str) {
    let actual =
        fs::read(path).unwrap_or_else(|e| panic!("{ctx}: cannot read {}: {e}", path.display()));
    if let Some(d) = diff_bytes(expected, &actual) {
        panic!("{ctx}: {} has wrong content: {d}", path.display());
    }
}

/// Polls `cond` every 20 ms until it is true (returns true) or `timeout` passes (false).
pub fn wait_until(mut cond: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sorted names of the entries of `dir`.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Minimal FTP client
// ---------------------------------------------------------------------------

pub const CTRL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    /// All lines, without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn first_digit(&self) -> u16 {
        self.code / 100
    }
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    pub fn is_prelim(&self) -> bool {
        self.first_digit() == 1
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.lines.join("\\r\\n"))
    }
}

#[derive(Debug)]
pub enum ReadError {
    /// Connection closed cleanly by the server (no partial reply).
    Eof,
    /// No complete reply within the read timeout.
    Timeout,
    /// Connection reset or other I/O error.
    Io(io::Error),
    /// Bytes that are not a valid FTP reply (missing CRLF, no 3-digit code, ...).
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "connection closed by server (EOF)"),
            ReadError::Timeout => write!(f, "timed out waiting for a reply"),
            ReadError::Io(e) => write!(f, "I/O error: {e}"),
            ReadError::Malformed(s) => write!(f, "malformed reply: {s}"),
        }
    }
}

/// How to open the data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    Pasv,
    Epsv,
    Port,
    Eprt,
}

impl DataMode {
    pub const ALL: [DataMode; 4] = [
        DataMode::Pasv,
        DataMode::Epsv,
        DataMode::Port,
        DataMode::Eprt,
    ];
}

enum PendingData {
    Connected(TcpStream),
    Listening(TcpListener),
}

/// Result of a transfer attempt that may legitimately fail.
#[derive(Debug)]
pub struct Attempt {
    /// Replies to the transfer command (preliminary and final, or just the error).
    pub replies: Vec<Reply>,
    /// Data received (for RETR/LIST/NLST).
    pub data: Vec<u8>,
}

impl Attempt {
    pub fn final_code(&self) -> u16 {
        self.replies.last().map(|r| r.code).unwrap_or(0)
    }
    /// True if the server accepted the command (1xx) and ended with 2xx.
    pub fn succeeded(&self) -> bool {
        self.replies.first().map(|r| r.is_prelim()).unwrap_or(false) && self.final_code() / 100 == 2
    }
}

pub struct Ftp {
    pub addr: SocketAddr,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    log: Vec<String>,
    pub timeout: Duration,
}

impl Ftp {
    /// Connects and expects the 220 greeting.
    pub fn connect(addr: SocketAddr) -> Ftp {
        let mut c = Ftp::connect_raw(addr);
        let r = c.read_reply();
        if r.code != 220 {
            panic!("greeting: expected 220, got {r}\n{}", c.transcript());
        }
        c
    }

    /// Connects without reading the greeting.
    pub fn connect_raw(addr: SocketAddr) -> Ftp {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to server {addr}: {e}"));
        Ftp::from_stream(stream, addr)
    }

    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
        self.stream.set_read_timeout(Some(t)).unwrap();
        self.stream.set_write_timeout(Some(t)).unwrap();
    }

    /// The last 40 lines of this session's transcript.
    pub fn transcript(&self) -> String {
        let start = self.log.len().saturating_sub(40);
        let mut s = String::from("session transcript:\n");
        for l in &self.log[start..] {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn note(&mut self, s: &str) {
        self.log.push(format!("# {s}"));
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        self.log
            .push(format!("> [raw {} bytes] {:?}", bytes.len(), shown));
        self.stream.write_all(bytes)
    }

    /// Sends `line` + CRLF.
    pub fn send(&mut self, line: &str) {
        self.log.push(format!("> {line}"));
        let mut b = line.as_bytes().to_vec();
        b.extend_from_slice(b"\r\n");
        if let Err(e) = self.stream.write_all(&b) {
            panic!("sending {line:?}: {e}\n{}", self.transcript());
        }
    }

    fn read_line_raw(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut line = Vec::new();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(if line.is_empty() {
                        ReadError::Timeout
                    } else {
                        ReadError::Malformed(format!(
                            "incomplete line (no LF) before timeout: {:?}",
                            String::from_utf8_lossy(&line)
                        ))
                    });
                }
                Err(e) => return Err(ReadError::Io(e)),
            };
            if buf.is_empty() {
                return Err(if line.is_empty() {
                    ReadError::Eof
                } else {
                    ReadError::Malformed(format!(
                        "connection closed in the middle of a line: {:?}",
                        String::from_utf8_lossy(&line)
                    ))
                });
            }
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&buf[..=i]);
                self.reader.consume(i + 1);
                return Ok(line);
            }
            let n = buf.len();
            line.extend_from_slice(buf);
            self.reader.consume(n);
            if line.len() > 64 * 1024 {
                return Err(ReadError::Malformed("reply line longer than 64 KiB".into()));
            }
        }
    }

    fn read_line(&mut self) -> Result<String, ReadError> {
        let raw = self.read_line_raw()?;
        if !raw.ends_with(b"\r\n") {
            return Err(ReadError::Malformed(format!(
                "reply line does not end with CRLF: {:?}",
                String::from_utf8_lossy(&raw)
            )));
        }
        let body = &raw[..raw.len() - 2];
        if body.contains(&b'\r') || body.contains(&b'\n') {
            return Err(ReadError::Malformed(format!(
                "stray CR/LF inside reply line: {:?}",
                String::from_utf8_lossy(&raw)
            )));
        }
        Ok(String::from_utf8_lossy(body).into_owned())
    }

    /// Reads one (possibly multi-line) reply, validating CRLF line endings and the
    /// 3-digit code on the first and last line.
    pub fn try_read_reply(&mut self) -> Result<Reply, ReadError> {
        let first = self.read_line()?;
        let fb = first.as_bytes();
        if fb.len() < 3
            || !fb[..3].iter().all(|b| b.is_ascii_digit())
            || !(fb.len() == 3 || fb[3] == b' ' || fb[3] == b'-')
        {
            self.log.push(format!("< {first} [MALFORMED]"));
            return Err(ReadError::Malformed(format!(
                "reply line without a 3-digit code followed by space or '-': {first:?}"
            )));
        }
        if fb[0] < b'1' || fb[0] > b'5' {
            self.log.push(format!("< {first} [MALFORMED]"));
            return Err(ReadError::Malformed(format!(
                "reply code not in 1xx..5xx: {first:?}"
            )));
        }
        let code: u16 = first[..3].parse().unwrap();
        let mut lines = vec![first.clone()];
        self.log.push(format!("< {first}"));
        if fb.len() > 3 && fb[3] == b'-' {
            let end = format!("{code} ");
            loop {
                let l = self.read_line().map_err(|e| match e {
                    ReadError::Eof => ReadError::Malformed(format!(
                        "connection closed inside multi-line reply {code}"
                    )),
                    other => other,
                })?;
                self.log.push(format!("< {l}"));
                let done = l.starts_with(&end) || l == code.to_string();
                lines.push(l);
                if done {
                    break;
                }
                if lines.len() > 10_000 {
                    return Err(ReadError::Malformed("multi-line reply never ends".into()));
                }
            }
        }
        Ok(Reply { code, lines })
    }

    /// Like [`try_read_reply`] but panics (with the transcript) on any error.
    pub fn read_reply(&mut self) -> Reply {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(e) => panic!(
                "reading reply from {}: {e}\n{}",
                self.addr,
                self.transcript()
            ),
        }
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.read_reply()
    }

    /// Sends a command and panics unless the reply code is exactly `code`.
    pub fn cmd_expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        if r.code != code {
            panic!(
                "{line:?}: expected reply {code}, got {r}\n{}",
                self.transcript()
            );
        }
        r
    }

    /// Sends a command and panics unless the reply's first digit is `digit`.
    pub fn cmd_expect_class(&mut self, line: &str, digit: u16) -> Reply {
        let r = self.cmd(line);
        if r.first_digit() != digit {
            panic!(
                "{line:?}: expected a {digit}xx reply, got {r}\n{}",
                self.transcript()
            );
        }
        r
    }

    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.transcript())
    }

    pub fn login(&mut self, user: &str, pass: &str) {
        self.cmd_expect(&format!("USER {user}"), 331);
        self.cmd_expect(&format!("PASS {pass}"), 230);
    }

    /// PASV; returns the announced data address (asserts 227 and host 127.0.0.1).
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.cmd_expect("PASV", 227);
        match parse_227(&r.lines[0]) {
            Some(a) => {
                if a.ip().to_string() != "127.0.0.1" {
                    self.fail(&format!("PASV announced {a}, expected host 127.0.0.1"));
                }
                a
            }
            None => self.fail(&format!("cannot parse 227 reply {r}")),
        }
    }

    /// EPSV; returns the data address (server's IP + announced port).
    pub fn epsv(&mut self) -> SocketAddr {
        let r = self.cmd_expect("EPSV", 229);
        match parse_229(&r.lines[0]) {
            Some(p) => SocketAddr::new(self.addr.ip(), p),
            None => self.fail(&format!("cannot parse 229 reply {r}")),
        }
    }

    fn open_data(&mut self, mode: DataMode) -> PendingData {
        match mode {
            DataMode::Pasv | DataMode::Epsv => {
                let a = if mode == DataMode::Pasv {
                    self.pasv()
                } else {
                    self.epsv()
                };
                match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                    Ok(s) => PendingData::Connected(s),
                    Err(e) => self.fail(&format!("connecting data connection to {a}: {e}")),
                }
            }
            DataMode::Port | DataMode::Eprt => {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let p = l.local_addr().unwrap().port();
                let line = if mode == DataMode::Port {
                    format!("PORT 127,0,0,1,{},{}", p >> 8, p & 0xff)
                } else {
                    format!("EPRT |1|127.0.0.1|{p}|")
                };
                self.cmd_expect(&line, 200);
                PendingData::Listening(l)
            }
        }
    }

    fn finish_data(&mut self, pd: PendingData) -> TcpStream {
        let s = match pd {
            PendingData::Connected(s) => s,
            PendingData::Listening(l) => {
                l.set_nonblocking(true).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match l.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            break s;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if Instant::now() > deadline {
                                self.fail(
                                    "server did not connect to our PORT/EPRT listener within 10 s",
                                );
                            }
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => self.fail(&format!("accept data connection: {e}")),
                    }
                }
            }
        };
        s.set_read_timeout(Some(self.timeout)).unwrap();
        s.set_write_timeout(Some(self.timeout)).unwrap();
        s
    }

    /// Tries an upload; does not panic on a refusal (returns the replies), only on
    /// protocol/timeout errors.
    pub fn try_stor(&mut self, name: &str, data: &[u8], mode: DataMode) -> Attempt {
        self.try_upload("STOR", name, data, mode)
    }

    pub fn try_upload(&mut self, verb: &str, name: &str, data: &[u8], mode: DataMode) -> Attempt {
        let pd = self.open_data(mode);
        self.send(&format!("{verb} {name}"));
        let first = self.read_reply();
        if !first.is_prelim() {
            return Attempt {
                replies: vec![first],
                data: Vec::new(),
            };
        }
        let mut s = self.finish_data(pd);
        if let Err(e) = s.write_all(data) {
            self.fail(&format!(
                "{verb} {name}: writing {} bytes to data connection: {e}",
                data.len()
            ));
        }
        let _ = s.shutdown(Shutdown::Write);
        drop(s);
        let fin = self.read_reply();
        Attempt {
            replies: vec![first, fin],
            data: Vec::new(),
        }
    }

    /// Uploads and asserts 150/125 then 226/250.
    pub fn stor(&mut self, name: &str, data: &[u8], mode: DataMode) {
        let a = self.try_stor(name, data, mode);
        self.check_transfer(&format!("STOR {name} ({} bytes, {mode:?})", data.len()), &a);
    }

    fn check_transfer(&self, what: &str, a: &Attempt) {
        let first = &a.replies[0];
        if first.code != 150 && first.code != 125 {
            self.fail(&format!("{what}: expected 150 or 125, got {first}"));
        }
        let fin = a.replies.last().unwrap();
        if a.replies.len() != 2 || (fin.code != 226 && fin.code != 250) {
            self.fail(&format!(
                "{what}: expected 226 (or 250) after the transfer, got {fin}"
            ));
        }
    }

    /// Tries a download-like command (RETR/LIST/NLST); the data is read to EOF.
    pub fn try_download(&mut self, line: &str, mode: DataMode) -> Attempt {
        let pd = self.open_data(mode);
        self.send(line);
        let first = self.read_reply();
        if !first.is_prelim() {
            return Attempt {
                replies: vec![first],
                data: Vec::new(),
            };
        }
        let mut s = self.finish_data(pd);
        let mut data = Vec::new();
        if let Err(e) = s.read_to_end(&mut data) {
            self.fail(&format!(
                "{line}: reading data connection after {} bytes: {e}",
                data.len()
            ));
        }
        drop(s);
        let fin = self.read_reply();
        Attempt {
            replies: vec![first, fin],
            data,
        }
    }

    pub fn retr(&mut self, name: &str, mode: DataMode) -> Vec<u8> {
        let a = self.try_download(&format!("RETR {name}"), mode);
        self.check_transfer(&format!("RETR {name} ({mode:?})"), &a);
        a.data
    }

    /// LIST/NLST (with optional argument) and returns the listing text.
    pub fn listing(&mut self, line: &str, mode: DataMode) -> String {
        let a = self.try_download(line, mode);
        self.check_transfer(&format!("{line} ({mode:?})"), &a);
        String::from_utf8_lossy(&a.data).into_owned()
    }

    /// Reads until EOF (or timeout); returns whether the server closed the connection.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + timeout;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
            if Instant::now() > deadline {
                return false;
            }
        }
    }
}

/// Parses `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` (parentheses optional).
pub fn parse_227(line: &str) -> Option<SocketAddr> {
    let rest = line.get(4..)?;
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u16> = rest[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u16>>>()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = format!("{}.{}.{}.{}", nums[0], nums[1], nums[2], nums[3]);
    let port = nums[4] * 256 + nums[5];
    format!("{ip}:{port}").parse().ok()
}

/// Parses `229 Entering Extended Passive Mode (|||port|)`.
pub fn parse_229(line: &str) -> Option<u16> {
    let open = line.find('(')?;
    let close = line[open..].find(')')? + open;
    let inner = &line[open + 1..close];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    // "", "", "", "port", ""
    if parts.len() != 5 {
        return None;
    }
    parts[3].parse().ok()
}

/// Extracts the quoted path from a 257 reply (`257 "/a ""b""" ...`).
pub fn parse_257(line: &str) -> Option<String> {
    let start = line.find('"')? + 1;
    let mut out = String::new();
    let mut chars = line[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Helpers for the production-feature tests (tests/production_*.rs)
// ---------------------------------------------------------------------------

impl Server {
    /// Sends signal `sig` (e.g. `libc::SIGTERM`) to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we spawned (and have not reaped yet).
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits up to `timeout` for the server to exit; returns its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// `kill -9` the server and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.stderr_path.clone()
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A `ringest serve` started with arbitrary arguments and environment (no implied
/// `--root`/`--user`), for config, restart and users-file tests. Killed (by PID) on drop;
/// on a panic the tail of its stderr is printed.
pub struct ServerProc {
    pub addr: SocketAddr,
    pub port: u16,
    pub desc: String,
    pub stdout_lines: Arc<Mutex<Vec<String>>>,
    pub stderr_path: PathBuf,
    child: Child,
}

impl ServerProc {
    /// Starts `ringest serve ARGS` with `env` added (every other `RINGEST_*` variable of the
    /// test process is removed), stderr to `stderr_path` (appended), and waits for the
    /// `ringest: listening on` line. `Err` describes why it did not start.
    pub fn try_start(
        args: &[String],
        env: &[(&str, &str)],
        stderr_path: &Path,
    ) -> Result<ServerProc, String> {
        ServerProc::try_start_in(args, env, stderr_path, None)
    }

    /// Like [`ServerProc::try_start`], in working directory `cwd`.
    pub fn try_start_in(
        args: &[String],
        env: &[(&str, &str)],
        stderr_path: &Path,
        cwd: Option<&Path>,
    ) -> Result<ServerProc, String> {
        let stderr_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr_path)
            .unwrap();
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve").args(args);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RINGEST_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file))
            .env("RUST_BACKTRACE", "1");
        let desc = format!("{env:?} {cmd:?}");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {desc}: {e}"))?;
        let (lines, rx) = collect_stdout(child.stdout.take().unwrap());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ringest: listening on ") {
                        let addr: SocketAddr = match rest.trim().parse() {
                            Ok(a) => a,
                            Err(e) => {
                                let _ = child.kill();
                                let _ = child.wait();
                                return Err(format!("unparsable listening line {line:?}: {e}"));
                            }
                        };
                        eprintln!("server started: {desc} -> {addr}");
                        // Give the rest of the banner a moment to arrive.
                        let until = Instant::now() + Duration::from_millis(300);
                        while let Ok(_l) =
                            rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                        {
                        }
                        return Ok(ServerProc {
                            addr,
                            port: addr.port(),
                            desc,
                            stdout_lines: lines,
                            stderr_path: stderr_path.to_path_buf(),
                            child,
                        });
                    }
                }
                Err(e) => {
                    let timed_out = matches!(e, mpsc::RecvTimeoutError::Timeout);
                    if timed_out {
                        let _ = child.kill();
                    }
                    let status = wait_child(&mut child, Duration::from_secs(5));
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "server did not print its listening line ({}; exit status {status:?})\n\
                         command: {desc}\nstdout: {:?}\nstderr:\n{}",
                        if timed_out {
                            "timeout"
                        } else {
                            "stdout closed"
                        },
                        lines.lock().unwrap(),
                        tail_of_file(stderr_path, 8192)
                    ));
                }
            }
        }
    }

    pub fn start(args: &[String], env: &[(&str, &str)], stderr_path: &Path) -> ServerProc {
        match ServerProc::try_start(args, env, stderr_path) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we spawned (and have not reaped yet).
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    pub fn stderr_tail(&self, n: usize) -> String {
        tail_of_file(&self.stderr_path, n)
    }

    pub fn login(&self, user: &str, pass: &str) -> Ftp {
        let mut c = Ftp::connect(self.addr);
        c.login(user, pass);
        c
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- ringest server {} ({}) stdout: {:?}\n---- stderr (tail) ----\n{}\n---- end ----",
                self.addr,
                self.desc,
                self.stdout(),
                self.stderr_tail(8192)
            );
        }
    }
}

/// Runs `ringest ARGS` (a subcommand such as `check-config` or `passwd`) with a timeout.
pub fn ringest_cmd(args: &[&str], timeout: Duration) -> CmdOutput {
    let mut cmd = Command::new(server_bin());
    cmd.args(args);
    run_cmd(&mut cmd, timeout)
}

/// TCP connect from the local address `local` (e.g. 127.0.0.2) to `remote`, with a
/// 10 s connect timeout.
pub fn connect_from(local: std::net::Ipv4Addr, remote: SocketAddr) -> io::Result<TcpStream> {
    use std::os::unix::io::FromRawFd;
    let remote = match remote {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => return Err(io::Error::other("IPv6 not supported here")),
    };
    // SAFETY: plain socket syscalls on a descriptor we own; on success ownership moves
    // to the TcpStream, on failure we close it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |fd: i32| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            Err(e)
        };
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        let mk = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let la = mk(local, 0);
        if libc::bind(
            fd,
            &la as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return fail(fd);
        }
        let ra = mk(*remote.ip(), remote.port());
        if libc::connect(
            fd,
            &ra as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return fail(fd);
        }
        let tv0 = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv0 as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        Ok(TcpStream::from_raw_fd(fd))
    }
}

impl Ftp {
    /// Wraps an already connected control stream (greeting not read).
    pub fn from_stream(stream: TcpStream, addr: SocketAddr) -> Ftp {
        stream.set_read_timeout(Some(CTRL_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CTRL_TIMEOUT)).unwrap();
        stream.set_nodelay(true).ok();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Ftp {
            addr,
            stream,
            reader,
            log: Vec::new(),
            timeout: CTRL_TIMEOUT,
        }
    }

    /// Connects from local address `local` and expects the 220 greeting.
    pub fn connect_from(local: std::net::Ipv4Addr, addr: SocketAddr) -> Ftp {
        let s =
            connect_from(local, addr).unwrap_or_else(|e| panic!("connect {local} -> {addr}: {e}"));
        let mut c = Ftp::from_stream(s, addr);
        let r = c.read_reply();
        if r.code != 220 {
            panic!("greeting: expected 220, got {r}\n{}", c.transcript());
        }
        c
    }
}

/// Raises this process's soft RLIMIT_NOFILE to at least `n` (bounded by the hard limit);
/// returns the resulting soft limit.
pub fn raise_nofile(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < n {
            let want = n.min(lim.rlim_max);
            lim.rlim_cur = want as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// Names in `dir` that are the server's hidden upload files (`.ringest-*`).
pub fn ringest_temp_names(dir: &Path) -> Vec<String> {
    dir_names(dir)
        .into_iter()
        .filter(|n| n.starts_with(".ringest-"))
        .collect()
}

impl Ftp {
    /// PASV + connect + `VERB name`; asserts the 150/125 reply and returns the data
    /// connection (with the session's timeouts).
    pub fn begin_transfer(&mut self, line: &str) -> TcpStream {
        let a = self.pasv();
        let s = TcpStream::connect_timeout(&a, Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&format!("connecting data connection to {a}: {e}")));
        self.send(line);
        let r = self.read_reply();
        if !r.is_prelim() {
            self.fail(&format!("{line}: expected 150/125, got {r}"));
        }
        s.set_read_timeout(Some(self.timeout)).unwrap();
        s.set_write_timeout(Some(self.timeout)).unwrap();
        s
    }

    /// The lines of the session transcript (all of them).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.clone()
    }
}

/// SO_LINGER {on, 0}: closing the socket sends RST instead of FIN (an abrupt close).
pub fn set_linger0(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a descriptor owned by `s` with a correctly sized struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Drains a server's stdout for its whole life: every line is kept (for failure reports) and also
/// sent on the returned channel (for start-up parsing).
pub fn collect_stdout(
    stdout: std::process::ChildStdout,
) -> (Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<String>();
    let kept = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    kept.lock().unwrap().push(l.clone());
                    let _ = tx.send(l);
                }
                Err(_) => break,
            }
        }
    });
    (lines, rx)
}

/// Runs tests/py/modeb_edge.py (MODE B edge cases with raw sockets) against `srv` and asserts it
/// passed.
pub fn run_modeb_edge(srv: &Server) {
    require_tool("python3");
    let script = format!("{}/tests/py/modeb_edge.py", env!("CARGO_MANIFEST_DIR"));
    let r = run_cmd(
        std::process::Command::new("python3")
            .arg(script)
            .arg("127.0.0.1")
            .arg(srv.port.to_string())
            .arg(&srv.user)
            .arg(&srv.pass)
            .arg(srv.root.path())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(120),
    );
    assert!(r.success(), "modeb_edge.py failed:\n{}", r.describe());
    assert!(
        r.stdout_str().contains("modeb edge cases ok"),
        "{}",
        r.describe()
    );
}

/// An argon2id hash of `pw`, made by `ringest passwd`.
/// `serve` arguments for a server on a free loopback port with root `root`, user `u` / `p`, two
/// core threads unless `extra` says otherwise, then `extra`.
pub fn proc_args(root: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--root",
        root.to_str().unwrap(),
        "--user",
        "u",
        "--password",
        "p",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--threads") {
        v.extend(["--threads".to_string(), "2".to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A curl command line with the options every test uses: fail on errors, bounded in time.
pub fn curl(max_time_s: u64) -> Command {
    require_tool("curl");
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--fail",
        "--connect-timeout",
        "10",
        "--max-time",
        &max_time_s.to_string(),
    ]);
    c
}

/// Runs `lftp -u user,pass -p PORT 127.0.0.1 -e SCRIPT` against `srv`, bounded by `timeout -k 5`
/// (lftp retries for a long time on its own), with HOME and the working directory in the server's
/// scratch directory so no user's lftp settings apply. Plain FTP unless the script turns TLS on
/// (`set ftp:ssl-allow yes`): lftp tries AUTH TLS whenever FEAT offers it and then refuses the
/// server's self-signed certificate.
pub fn lftp_script(srv: &Server, script: &str, timeout_s: u64) -> CmdOutput {
    require_tool("lftp");
    require_tool("timeout");
    let mut cmd = Command::new("timeout");
    let script = format!("set ftp:ssl-allow no; {script}");
    cmd.args(["-k", "5", &timeout_s.to_string(), "lftp", "-u"])
        .arg(format!("{},{}", srv.user, srv.pass))
        .args(["-p", &srv.port.to_string(), "127.0.0.1", "-e", &script])
        .env("HOME", srv.scratch())
        .current_dir(srv.scratch());
    run_cmd(&mut cmd, Duration::from_secs(timeout_s + 20))
}

/// Runs one part of `tests/py/client_habits.py` (ftplib) against `srv`.
pub fn client_habits(srv: &Server, part: &str, timeout: Duration) -> CmdOutput {
    require_tool("python3");
    let script = format!("{}/tests/py/client_habits.py", env!("CARGO_MANIFEST_DIR"));
    run_cmd(
        Command::new("python3")
            .arg(script)
            .args(["127.0.0.1", &srv.port.to_string(), &srv.user, &srv.pass])
            .arg(part)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        timeout,
    )
}

/// GET `path` from `addr` (HOST:PORT) with curl: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    require_tool("curl");
    let r = run_cmd(
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
            .arg(format!("http://{addr}{path}")),
        Duration::from_secs(30),
    );
    assert!(r.success(), "curl {path}:\n{}", r.describe());
    let out = r.stdout_str();
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// The value of metric line `name` (with its labels) in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// The HOST:PORT of a server's `/metrics` endpoint, from its start-up line (started with
/// `--metrics-listen`).
pub fn metrics_addr(stdout_lines: &Arc<Mutex<Vec<String>>>) -> String {
    let find = || {
        stdout_lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("ringest: metrics on http://")
                .map(|s| s.trim_end_matches("/metrics").to_string())
        })
    };
    let mut found = find();
    if found.is_none() {
        wait_until(
            || {
                found = find();
                found.is_some()
            },
            Duration::from_secs(5),
        );
    }
    found.unwrap_or_else(|| {
        panic!(
            "no 'ringest: metrics on http://ADDR/metrics' line: {:?}",
            stdout_lines.lock().unwrap()
        )
    })
}

pub fn argon2_hash(pw: &str) -> String {
    let r = ringest_cmd(&["passwd", "--password", pw], Duration::from_secs(30));
    r.assert_success("ringest passwd");
    r.stdout_str().trim().to_string()
}

/// A server on the users file `users`, with fast failed logins and no per-IP lockout (the tests
/// log in wrongly on purpose), plus `extra` flags; its stderr goes to `base/stderr.log`.
pub fn users_file_server(base: &Path, users: &Path, extra: &[&str]) -> ServerProc {
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--users-file",
        users.to_str().unwrap(),
        "--threads",
        "2",
        "--login-fail-delay-ms",
        "10",
        "--max-login-failures-per-ip",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    ServerProc::start(&args, &[], &base.join("stderr.log"))
}

/// The first line of the server's standard output that starts with `prefix`, waiting for it up to
/// 10 s: lines after "listening on" (the certificate, the implicit-TLS port) may still be on their
/// way when the server is already accepting.
pub fn startup_line(srv: &Server, prefix: &str) -> String {
    let find = || {
        let lines = srv.stdout_lines.lock().unwrap();
        lines.iter().find(|l| l.starts_with(prefix)).cloned()
    };
    wait_until(|| find().is_some(), Duration::from_secs(10));
    find().unwrap_or_else(|| {
        panic!(
            "no {prefix:?} line in {:?}",
            srv.stdout_lines.lock().unwrap()
        )
    })
}

/// Runs the real `globus-url-copy` (Debian `globus-gass-copy-progs`) with `args` from `src` to
/// `dst`, bounded in time; fails the test if it is not installed.
pub fn guc(args: &[&str], src: &str, dst: &str) -> CmdOutput {
    require_tool("globus-url-copy");
    let mut c = Command::new("timeout");
    c.args(["-k", "5", "120", "globus-url-copy"])
        .args(args)
        .arg(src)
        .arg(dst);
    run_cmd(&mut c, Duration::from_secs(150))
}

/// The `ftp://user:pass@127.0.0.1:port/path` URL globus-url-copy takes for `path` on `srv`.
pub fn guc_url(srv: &Server, path: &str) -> String {
    format!(
        "ftp://{}:{}@127.0.0.1:{}/{path}",
        srv.user, srv.pass, srv.port
    )
}
