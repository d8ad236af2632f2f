//! Past one machine (issue #12): a 3-node Garage cluster (replication factor 3), HAProxy with
//! `send-proxy-v2` in front of two ringest nodes landing into it, clients on their own 127.0.0.x
//! source addresses, and `loadgen` as one of those clients.
//!
//! Layout, all on loopback:
//! * Garage: three nodes on 127.0.0.1 ([`super::garage`]).
//! * ringest node `i`: control on `127.0.0.1:<free port>`, its own passive range, `--storage s3`,
//!   `--proxy-protocol required --proxy-from 127.0.0.1/32`, `--passive-address 127.0.0.2`.
//! * HAProxy: the control front end on `127.0.0.2:<free port>` (leastconn over the nodes, health
//!   checks with a PROXY header, redispatch when a node is gone), and one front end per node's
//!   passive range on 127.0.0.2 forwarding to the same port of that node. HAProxy connects from
//!   127.0.0.1 (`source`), so the nodes see the balancer there and nowhere else.
//! * Clients connect from 127.0.0.5 and up, so every log line that names a client can be told
//!   apart from the balancer.
//!
//! Everything started here is a child process killed by its PID on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::garage::Garage;
use super::s3::S3;
use super::*;

/// The balancer's address: what clients connect to and what PASV replies name.
pub const BALANCER_IP: &str = "127.0.0.2";
/// The address HAProxy connects to the nodes from: the nodes' only `proxy_from`.
pub const BALANCER_SOURCE: &str = "127.0.0.1";
/// The login every node takes (`--user`/`--password`); object keys start with `USER/`.
pub const USER: &str = "tester";
pub const PASS: &str = "s3cret-Pw";
/// S3's smallest part, and the part size the nodes are started with: files above it go multipart.
pub const PART: u64 = 5 * MIB;

/// One process-wide lock: the tests of a binary run one cluster at a time (each is several
/// processes on a 2-core machine, and the timing ones must not share it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The loopback address 127.0.0.`n`.
pub fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// `n` consecutive ports, every one free on 127.0.0.1 and on 127.0.0.2, below the ephemeral range
/// (so outgoing connections cannot take them meanwhile). Random base, retried.
pub fn free_port_range(n: u16) -> (u16, u16) {
    let mut seed = std::process::id() as u64 ^ nanos();
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let base = 20000 + ((seed >> 33) % (12000 - n as u64)) as u16;
        let ok = (base..base + n).all(|p| {
            ["127.0.0.1", "127.0.0.2", "0.0.0.0"]
                .iter()
                .all(|ip| TcpListener::bind(format!("{ip}:{p}")).is_ok())
        });
        if ok {
            return (base, base + n - 1);
        }
    }
    panic!("no free range of {n} ports found on 127.0.0.1/127.0.0.2");
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A free port on `ip`.
pub fn free_port_on(ip: &str) -> u16 {
    TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Harness debugging only: `RINGEST_CLUSTER_LOCAL=1` starts the nodes on local storage and reads
/// "objects" from their roots, to check the balancer, the nodes and the clients without an S3
/// backend. The store-down and memory-cap tests cannot pass that way.
pub fn local_debug() -> bool {
    std::env::var_os("RINGEST_CLUSTER_LOCAL").is_some_and(|v| v == "1")
}

/// How the nodes of a [`Cluster`] (or a lone [`S3Node`]) are started.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// Passive ports per node.
    pub passive_ports: u16,
    /// `s3_timeout` in seconds.
    pub s3_timeout: u64,
    /// `s3_memory_cap` in bytes (None: the default).
    pub memory_cap: Option<u64>,
    /// More flags for every node.
    pub extra: Vec<String>,
}

impl Default for NodeOpts {
    fn default() -> Self {
        NodeOpts {
            passive_ports: 100,
            s3_timeout: 10,
            memory_cap: None,
            extra: Vec::new(),
        }
    }
}

/// One ringest node landing into S3.
pub struct S3Node {
    pub proc: ServerProc,
    pub passive: (u16, u16),
    pub xferlog: PathBuf,
    pub metrics: String,
    pub killed: bool,
    pub dir: PathBuf,
}

impl S3Node {
    /// Starts `ringest serve` into `endpoint`'s bucket. `behind_balancer`: PROXY headers required
    /// from [`BALANCER_SOURCE`] and PASV naming [`BALANCER_IP`].
    pub fn start(
        g: &Garage,
        endpoint: &str,
        dir: &Path,
        name: &str,
        opts: &NodeOpts,
        behind_balancer: bool,
    ) -> S3Node {
        let dir = dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        // Local debugging: the nodes share one root, as they share one bucket.
        let root = if local_debug() {
            dir.parent().unwrap().join("shared-root")
        } else {
            dir.join("root")
        };
        fs::create_dir_all(&root).unwrap();
        let creds = dir.join("s3-credentials");
        fs::write(&creds, format!("{}\n{}\n", g.key_id, g.secret)).unwrap();
        let xferlog = dir.join("xferlog");
        let passive = free_port_range(opts.passive_ports);
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--root".into(),
            root.display().to_string(),
            "--user".into(),
            USER.into(),
            "--password".into(),
            PASS.into(),
            "--threads".into(),
            "2".into(),
            "--tls".into(),
            "off".into(),
            "--passive-ports".into(),
            format!("{}-{}", passive.0, passive.1),
            "--xferlog".into(),
            xferlog.display().to_string(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--data-timeout".into(),
            "30".into(),
        ];
        let s3_args: Vec<String> = vec![
            "--storage".into(),
            "s3".into(),
            "--s3-endpoint".into(),
            endpoint.into(),
            "--s3-region".into(),
            g.region.clone(),
            "--s3-bucket".into(),
            g.bucket.clone(),
            "--s3-credentials-file".into(),
            creds.display().to_string(),
            "--s3-part-size".into(),
            PART.to_string(),
            "--s3-timeout".into(),
            opts.s3_timeout.to_string(),
        ];
        if !local_debug() {
            args.extend(s3_args);
            if let Some(cap) = opts.memory_cap {
                args.extend(["--s3-memory-cap".into(), cap.to_string()]);
            }
        }
        if behind_balancer {
            args.extend(
                [
                    "--proxy-protocol",
                    "required",
                    "--proxy-from",
                    "127.0.0.1/32",
                    "--passive-address",
                    BALANCER_IP,
                ]
                .map(String::from),
            );
        }
        args.extend(opts.extra.iter().cloned());
        let proc = ServerProc::start(&args, &[], &dir.join("stderr.log"));
        let metrics = metrics_addr(&proc.stdout_lines);
        S3Node {
            proc,
            passive,
            xferlog,
            metrics,
            killed: false,
            dir,
        }
    }

    /// The node's `--root` (S3 nodes land nothing there).
    pub fn root(&self) -> PathBuf {
        if local_debug() {
            self.dir.parent().unwrap().join("shared-root")
        } else {
            self.dir.join("root")
        }
    }

    pub fn xferlog_text(&self) -> String {
        fs::read_to_string(&self.xferlog).unwrap_or_default()
    }

    /// One metric from `/metrics` (None if absent).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (code, body) = http_get(&self.metrics, "/metrics");
        assert_eq!(code, 200, "/metrics: {body}");
        metric(&body, name)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.proc.pid()).unwrap_or(0)
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `RssAnon`/`RssFile`/`RssShmem` lines of `/proc/PID/status`, on one line.
pub fn rss_parts(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Rss"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Samples a process's VmRSS every 100 ms until finished: the peak, the samples taken, and what
/// the RSS was made of at the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<(u64, usize, String)>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(Mutex::new((0u64, 0usize, String::new())));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(900);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                if let Some(k) = rss_kib(pid) {
                    let mut g = p.lock().unwrap();
                    if k > g.0 {
                        g.0 = k;
                        g.2 = rss_parts(pid);
                    }
                    g.1 += 1;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        RssSampler {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    /// (peak KiB, samples taken, the RSS's parts at the peak).
    pub fn finish(mut self) -> (u64, usize, String) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.lock().unwrap().clone()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// HAProxy, killed by its PID on drop.
pub struct Haproxy {
    child: Child,
    pub log: PathBuf,
    pub cfg: PathBuf,
    pub front: SocketAddr,
}

impl Haproxy {
    /// Starts HAProxy (the Debian `haproxy` binary; the test fails if it is missing) with a
    /// control front end on [`BALANCER_IP`] over `nodes` (control port, passive range).
    pub fn start(dir: &Path, nodes: &[(u16, (u16, u16))]) -> Haproxy {
        require_tool("haproxy");
        let front_port = free_port_on(BALANCER_IP);
        let mut cfg = format!(
            "global\n  maxconn 4000\n  log stderr format raw local0 info\n\
             defaults\n  mode tcp\n  log global\n  option tcplog\n  timeout connect 2s\n  timeout client 120s\n  \
             timeout server 120s\n  retries 3\n  option redispatch 1\n\
             frontend ftp\n  bind {BALANCER_IP}:{front_port}\n  default_backend ftp\n\
             backend ftp\n  balance leastconn\n  source {BALANCER_SOURCE}\n"
        );
        for (i, (port, _)) in nodes.iter().enumerate() {
            cfg.push_str(&format!(
                "  server node{i} 127.0.0.1:{port} send-proxy-v2 check check-send-proxy \
                 inter 500 fall 2 rise 1\n"
            ));
        }
        for (i, (_, (lo, hi))) in nodes.iter().enumerate() {
            cfg.push_str(&format!(
                "frontend pasv{i}\n  bind {BALANCER_IP}:{lo}-{hi}\n  default_backend pasv{i}\n\
                 backend pasv{i}\n  source {BALANCER_SOURCE}\n  \
                 server node{i} 127.0.0.1 send-proxy-v2\n"
            ));
        }
        let path = dir.join("haproxy.cfg");
        fs::write(&path, &cfg).unwrap();
        let check = run_cmd(
            Command::new("haproxy").arg("-c").arg("-f").arg(&path),
            Duration::from_secs(20),
        );
        assert!(check.success(), "haproxy -c:\n{}\n{cfg}", check.describe());
        let log = fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting haproxy");
        let front: SocketAddr = format!("{BALANCER_IP}:{front_port}").parse().unwrap();
        let mut h = Haproxy {
            child,
            log: dir.join("haproxy.log"),
            cfg: path,
            front,
        };
        let up = wait_until(
            || TcpStream::connect(front).is_ok(),
            Duration::from_secs(10),
        );
        if !up || h.child.try_wait().ok().flatten().is_some() {
            panic!(
                "haproxy did not listen on {front}:\n{}",
                tail_of_file(&dir.join("haproxy.log"), 4000)
            );
        }
        h
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- haproxy log (tail) ----\n{}",
                tail_of_file(&self.log, 6000)
            );
        }
    }
}

/// Garage, two ringest nodes into it, HAProxy in front. Dropped in field order: the balancer,
/// the nodes, then the store.
pub struct Cluster {
    pub haproxy: Haproxy,
    pub nodes: Vec<S3Node>,
    pub garage: Garage,
    /// A client of the bucket (through Garage node 0) to check objects with.
    pub s3: S3,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Garage, then `nodes` ringest nodes (node `i` talks to Garage node `i % 3`), then HAProxy,
    /// and waits until HAProxy's health checks see every node up.
    pub fn start(nodes: usize, opts: NodeOpts) -> Cluster {
        let t0 = Instant::now();
        let garage = Garage::start();
        let dir = tempfile::Builder::new()
            .prefix("ringest-s3cluster-")
            .tempdir()
            .unwrap();
        let eps = garage.endpoints();
        let ns: Vec<S3Node> = (0..nodes)
            .map(|i| {
                S3Node::start(
                    &garage,
                    &eps[i % eps.len()],
                    dir.path(),
                    &format!("node{i}"),
                    &opts,
                    true,
                )
            })
            .collect();
        let spec: Vec<(u16, (u16, u16))> = ns.iter().map(|n| (n.proc.port, n.passive)).collect();
        let haproxy = Haproxy::start(dir.path(), &spec);
        let s3 = S3::for_garage(&garage);
        let c = Cluster {
            haproxy,
            nodes: ns,
            garage,
            s3,
            dir,
        };
        // Every node answers through the balancer: a few sessions, leastconn spreads them.
        for i in 0..nodes * 2 {
            let mut f = Ftp::connect_from(lo(5), c.haproxy.front);
            f.login(USER, PASS);
            f.cmd_expect("NOOP", 200);
            drop(f);
            let _ = i;
        }
        eprintln!(
            "cluster: garage x3, {nodes} ringest nodes {:?}, haproxy on {} in {:.1?}",
            c.nodes
                .iter()
                .map(|n| (n.proc.addr, n.passive))
                .collect::<Vec<_>>(),
            c.haproxy.front,
            t0.elapsed()
        );
        c
    }

    pub fn front(&self) -> SocketAddr {
        self.haproxy.front
    }

    /// The object key of FTP path `path` (relative to the login's root).
    pub fn key(path: &str) -> String {
        format!("{USER}/{}", path.trim_start_matches('/'))
    }

    /// The bytes stored under FTP path `path`, read through S3 (not through ringest).
    pub fn object(&self, path: &str) -> Option<Vec<u8>> {
        if local_debug() {
            return self
                .nodes
                .iter()
                .find_map(|n| fs::read(n.root().join(path.trim_start_matches('/'))).ok());
        }
        self.s3
            .get(&Cluster::key(path))
            .unwrap_or_else(|e| panic!("GET {}: {e}", Cluster::key(path)))
    }

    pub fn assert_object(&self, path: &str, expected: &[u8], ctx: &str) {
        match self.object(path) {
            Some(got) => assert_bytes_eq(expected, &got, &format!("{ctx}: object {path}")),
            None => panic!("{ctx}: no object {} in the bucket", Cluster::key(path)),
        }
    }

    /// The files under FTP directory `dir` (names relative to the root, as `dir/name`) with their
    /// sizes, from a listing of the bucket (directory markers left out).
    pub fn list(&self, dir: &str) -> Vec<(String, u64)> {
        let dir = dir.trim_matches('/');
        if local_debug() {
            let mut v = Vec::new();
            for n in self.nodes.iter().take(1) {
                if let Ok(rd) = fs::read_dir(n.root().join(dir)) {
                    for e in rd.flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !name.starts_with('.') {
                            v.push((format!("{dir}/{name}"), e.metadata().unwrap().len()));
                        }
                    }
                }
            }
            return v;
        }
        let prefix = format!("{}/", Cluster::key(dir));
        self.s3
            .list_all(&prefix)
            .unwrap_or_else(|e| panic!("listing {prefix}: {e}"))
            .into_iter()
            .filter(|(k, _)| !k.ends_with('/'))
            .map(|(k, n)| (k[USER.len() + 1..].to_string(), n))
            .collect()
    }

    /// Every node's xferlog, concatenated.
    pub fn xferlogs(&self) -> String {
        self.nodes.iter().map(S3Node::xferlog_text).collect()
    }

    /// Kills node `i` with SIGKILL (by PID).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].proc.kill9();
        self.nodes[i].killed = true;
    }
}

/// Logs in through `front` from source address `src`.
pub fn login_from(src: Ipv4Addr, front: SocketAddr) -> Ftp {
    let mut f = Ftp::connect_from(src, front);
    f.login(USER, PASS);
    f.cmd_expect("TYPE I", 200);
    f
}

/// PASV on `c`: the data address it names, which must be the address the control connection
/// reached (the balancer's, behind one).
pub fn pasv_addr(c: &mut Ftp) -> SocketAddr {
    let r = c.cmd_expect("PASV", 227);
    let a = parse_227(&r.lines[0]).unwrap_or_else(|| c.fail(&format!("cannot parse {r}")));
    if a.ip() != c.addr.ip() {
        c.fail(&format!(
            "PASV named {a}, not the address connected to ({})",
            c.addr
        ));
    }
    a
}

/// PASV on `c`, and the data connection from `src` to the address it names.
pub fn pasv_from(c: &mut Ftp, src: Ipv4Addr) -> TcpStream {
    let a = pasv_addr(c);
    connect_from(src, a).unwrap_or_else(|e| c.fail(&format!("data connect {src} -> {a}: {e}")))
}

/// STOR over a data connection from `src` (the control connection's address); returns the final
/// reply code (226 when the server acknowledged the upload), or the refusal.
pub fn stor_from(c: &mut Ftp, src: Ipv4Addr, name: &str, data: &[u8]) -> Reply {
    let mut s = pasv_from(c, src);
    c.send(&format!("STOR {name}"));
    let first = c.read_reply();
    if !first.is_prelim() {
        return first;
    }
    s.set_write_timeout(Some(Duration::from_secs(60))).ok();
    let w = s.write_all(data);
    let _ = s.shutdown(std::net::Shutdown::Write);
    drop(s);
    let r = c.read_reply();
    if r.code == 226 {
        assert!(w.is_ok(), "226 although writing the data failed: {w:?}");
    }
    r
}

// ---------------------------------------------------------------------------------------------
// loadgen: the binary, running it, and the content it sends (to check objects through S3)
// ---------------------------------------------------------------------------------------------

/// The loadgen binary: `RINGEST_LOADGEN`, else the one built beside the server binary (`cargo test
/// --workspace` builds both).
pub fn loadgen_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGEST_LOADGEN") {
        return PathBuf::from(p);
    }
    let p = server_bin().with_file_name("loadgen");
    assert!(
        p.is_file(),
        "loadgen not found at {}: build it with the same profile (`cargo build --release -p \
         loadgen`, or run `cargo test --workspace`), or set RINGEST_LOADGEN",
        p.display()
    );
    p
}

/// A running loadgen, killed by PID on drop.
pub struct Loadgen {
    child: Child,
    pub ok_list: PathBuf,
    out: PathBuf,
    err: PathBuf,
    pub seed: u64,
    pub size: String,
    started: Instant,
}

/// What a loadgen run did.
#[derive(Debug)]
pub struct LoadgenResult {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Remote names of the files acknowledged with 226/250.
    pub ok: Vec<String>,
    pub elapsed: Duration,
}

impl LoadgenResult {
    /// A number from loadgen's `--json` output (the first `"field":` in it).
    pub fn num(&self, field: &str) -> f64 {
        json_num(&self.stdout, field)
            .unwrap_or_else(|| panic!("no {field:?} in loadgen output:\n{}", self.stdout))
    }

    pub fn describe(&self) -> String {
        format!(
            "loadgen exit {:?} after {:.1?}\nstdout: {}\nstderr (tail): {}",
            self.code,
            self.elapsed,
            truncate_middle(&self.stdout, 4000),
            truncate_middle(&self.stderr, 4000)
        )
    }
}

/// `"field": <number>` in a JSON text.
pub fn json_num(text: &str, field: &str) -> Option<f64> {
    let pat = format!("\"{field}\":");
    let at = text.find(&pat)? + pat.len();
    let rest = text[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Loadgen {
    /// `loadgen SCENARIO --host H --port P --user --password --json --quiet --seed --size
    /// --ok-list ARGS`, with stdout/stderr to files in `dir`.
    pub fn spawn(
        dir: &Path,
        scenario: &str,
        front: SocketAddr,
        size: &str,
        seed: u64,
        args: &[&str],
    ) -> Loadgen {
        let tag = format!("{scenario}-{}", nanos() % 1_000_000);
        let ok_list = dir.join(format!("ok-{tag}.txt"));
        let out = dir.join(format!("loadgen-{tag}.out"));
        let err = dir.join(format!("loadgen-{tag}.err"));
        let mut cmd = Command::new(loadgen_bin());
        cmd.arg(scenario)
            .args(["--host", &front.ip().to_string()])
            .args(["--port", &front.port().to_string()])
            .args(["--user", USER, "--password", PASS, "--json", "--quiet"])
            .args(["--seed", &seed.to_string(), "--size", size])
            .arg("--ok-list")
            .arg(&ok_list)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        eprintln!("starting {cmd:?}");
        let child = cmd.spawn().expect("starting loadgen");
        Loadgen {
            child,
            ok_list,
            out,
            err,
            seed,
            size: size.to_string(),
            started: Instant::now(),
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` (then kills it and panics).
    pub fn wait(mut self, timeout: Duration) -> LoadgenResult {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "loadgen still running after {timeout:?}; stderr:\n{}",
                    tail_of_file(&self.err, 4000)
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        let ok = fs::read_to_string(&self.ok_list)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        LoadgenResult {
            code: status.code(),
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: tail_of_file(&self.err, 8000),
            ok,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The content loadgen sends, regenerated (loadgen/src/content.rs: a pure function of seed, file
/// id and offset), so an object can be checked through S3 without keeping what was sent.
pub mod content {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// File `id`'s bytes, whole.
    pub fn bytes(seed: u64, id: u64, size: u64) -> Vec<u8> {
        let k = mix(seed ^ mix(id.wrapping_add(1).wrapping_mul(GOLDEN)));
        let mut out = Vec::with_capacity(size as usize + 8);
        let mut w = 0u64;
        while (out.len() as u64) < size {
            out.extend_from_slice(
                &mix(k.wrapping_add(w.wrapping_add(1).wrapping_mul(GOLDEN))).to_le_bytes(),
            );
            w += 1;
        }
        out.truncate(size as usize);
        out
    }

    fn parse_one(s: &str) -> u64 {
        let t = s.trim().to_ascii_lowercase();
        let (num, mult) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1u64 << 10),
            Some('m') => (&t[..t.len() - 1], 1 << 20),
            Some('g') => (&t[..t.len() - 1], 1 << 30),
            _ => (&t[..], 1),
        };
        num.parse::<u64>().expect("size") * mult
    }

    /// File `id`'s size for loadgen's `--size` spec (`4K`, `1M`, `4K..1M`).
    pub fn size_of(spec: &str, seed: u64, id: u64) -> u64 {
        let (min, max) = match spec.split_once("..") {
            Some((a, b)) => (parse_one(a), parse_one(b)),
            None => (parse_one(spec), parse_one(spec)),
        };
        if max <= min {
            return min;
        }
        let r = mix(seed ^ 0x5eed_5eed_0000_0000 ^ mix(id.wrapping_mul(GOLDEN) ^ 0xa5a5));
        min + r % (max - min + 1)
    }

    /// The id in a loadgen file name `PREFIX/f<id>`.
    pub fn id_of(name: &str) -> u64 {
        name.rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix('f'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a loadgen file name: {name:?}"))
    }
}

impl Loadgen {
    /// The bytes loadgen sent as file `name` (`PREFIX/f<id>`).
    pub fn expected(&self, name: &str) -> Vec<u8> {
        expected_loadgen(&self.size, self.seed, name)
    }
}

/// The bytes a loadgen run with `size` and `seed` sent as file `name`.
pub fn expected_loadgen(size: &str, seed: u64, name: &str) -> Vec<u8> {
    let id = content::id_of(name);
    content::bytes(seed, id, content::size_of(size, seed, id))
}

/// Checks through S3 that every file in `names` is in the bucket with loadgen's content; returns
/// the bytes checked. Panics naming the first missing or different object.
pub fn check_loadgen_objects(
    c: &Cluster,
    size: &str,
    seed: u64,
    names: &[String],
    ctx: &str,
) -> u64 {
    let mut total = 0;
    for name in names {
        let key = Cluster::key(name);
        let want = expected_loadgen(size, seed, name);
        match c.object(name) {
            Some(got) => assert_bytes_eq(&want, &got, &format!("{ctx}: object {key}")),
            None => panic!("{ctx}: acknowledged file {name} is not in the bucket ({key})"),
        }
        total += want.len() as u64;
    }
    total
}

/// Reads a whole stream (for tests that talk raw FTP).
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

/// A TCP gate between a node and its store, to take the store away under a running node: it
/// forwards to `upstream` until told otherwise, then either answers nothing at all (every
/// connection, old and new, is held open and read from, and nothing comes back: a store that
/// hangs) or closes (its port refuses, and the connections it forwarded are cut: a store that is
/// gone). Every thread stops on [`StoreGate::Closed`] or when dropped.
pub struct StoreGate {
    pub addr: SocketAddr,
    mode: Arc<std::sync::atomic::AtomicU8>,
    handle: Option<thread::JoinHandle<()>>,
}

impl StoreGate {
    pub const FORWARD: u8 = 0;
    pub const HANG: u8 = 1;
    pub const CLOSED: u8 = 2;

    pub fn start(upstream: SocketAddr) -> StoreGate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(std::sync::atomic::AtomicU8::new(Self::FORWARD));
        let m = mode.clone();
        let handle = thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(900);
            while m.load(Ordering::Relaxed) != Self::CLOSED && Instant::now() < end {
                let (client, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).ok();
                client
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .ok();
                let up = if m.load(Ordering::Relaxed) == Self::FORWARD {
                    TcpStream::connect(upstream).ok()
                } else {
                    None
                };
                let up_r = up.as_ref().and_then(|u| u.try_clone().ok());
                if let Some(u) = &up_r {
                    u.set_read_timeout(Some(Duration::from_millis(100))).ok();
                }
                // client -> store (or nowhere, once hanging)
                let (m1, mut c_r, mut u_w) = (m.clone(), client.try_clone().unwrap(), up);
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let mode = m1.load(Ordering::Relaxed);
                        if mode == Self::CLOSED || Instant::now() > end {
                            let _ = c_r.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        match c_r.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                if mode == Self::FORWARD {
                                    if let Some(u) = u_w.as_mut() {
                                        if u.write_all(&buf[..n]).is_err() {
                                            break;
                                        }
                                    }
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                    if let Some(u) = u_w {
                        let _ = u.shutdown(std::net::Shutdown::Both);
                    }
                });
                // store -> client, while forwarding
                if let Some(mut u_r) = up_r {
                    let (m2, mut c_w) = (m.clone(), client);
                    thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while m2.load(Ordering::Relaxed) == Self::FORWARD {
                            match u_r.read(&mut buf) {
                                Ok(0) => {
                                    let _ = c_w.shutdown(std::net::Shutdown::Write);
                                    break;
                                }
                                Ok(n) => {
                                    if c_w.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => break,
                            }
                        }
                    });
                }
            }
            // Dropping the listener here closes the port.
        });
        StoreGate {
            addr,
            mode,
            handle: Some(handle),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::Relaxed);
        if mode == Self::CLOSED {
            if let Some(h) = self.handle.as_ref() {
                // The accept loop notices within 5 ms; wait until the port refuses.
                let _ = h;
                wait_until(
                    || TcpStream::connect(self.addr).is_err(),
                    Duration::from_secs(5),
                );
            }
        }
    }
}

impl Drop for StoreGate {
    fn drop(&mut self) {
        self.mode.store(Self::CLOSED, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
