//! A real Garage cluster for the S3 storage tests: three nodes on 127.0.0.1 with
//! `replication_factor = 3`, so a write is acknowledged only once a quorum of nodes holds it and
//! one node can be stopped mid-test without losing an acknowledged object.
//!
//! The binary is found, never downloaded: `RINGEST_GARAGE`, then the CI cache
//! ([`GARAGE_CACHE_BIN`]), then `garage` in PATH. A test that cannot find it panics with how to
//! build it: a missing part fails the test, it does not skip it.
//!
//! Every node is a child process killed by its PID when the [`Garage`] is dropped (or earlier by
//! [`Garage::stop_node`]); its config, metadata, data and log live in one temporary directory.

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{run_cmd, tail_of_file, which, CmdOutput};

/// Where `.ci/run` installs Garage (`cargo install garage --locked --root /var/cache/ringest/garage`).
pub const GARAGE_CACHE_BIN: &str = "/var/cache/ringest/garage/bin/garage";

/// The S3 region the cluster is configured with (any name works with Garage; clients must sign
/// with the same one).
pub const GARAGE_REGION: &str = "garage";

/// Nodes in the cluster: the smallest count where `replication_factor = 3` puts every object on
/// every node and a quorum (2) survives one node stopping.
pub const GARAGE_NODES: usize = 3;

/// How long cluster set-up may take before the test fails (start, connect, layout, key, bucket).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// One `garage` CLI call.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// The Garage binary, or a panic saying how to get one.
pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGEST_GARAGE") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "RINGEST_GARAGE={} is not a file; unset it or point it at a garage binary",
            p.display()
        );
        return p;
    }
    let cached = PathBuf::from(GARAGE_CACHE_BIN);
    if cached.is_file() {
        return cached;
    }
    if let Some(p) = which("garage") {
        return p;
    }
    panic!(
        "Garage binary not found: this test needs a real Garage cluster and cannot run without it. \
         Build it once (about 20 minutes on 2 cores): \
         `cargo install garage --locked --root /var/cache/ringest/garage` \
         (.ci/run does this when {GARAGE_CACHE_BIN} is missing), \
         or set RINGEST_GARAGE=/path/to/garage"
    );
}

/// One Garage node: its process (while running), config and ports.
pub struct GarageNode {
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub rpc_port: u16,
    pub s3_port: u16,
    /// Full node id (hex), learnt once the node is up.
    pub id: String,
}

impl GarageNode {
    /// The node's S3 endpoint, e.g. `http://127.0.0.1:39000`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A running 3-node Garage cluster with one bucket and one access key allowed on it.
pub struct Garage {
    bin: PathBuf,
    pub nodes: Vec<GarageNode>,
    /// S3 endpoint of node 0 (every node serves the S3 API; see [`Garage::endpoints`]).
    pub endpoint: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
    pub bucket: String,
    // Last: removed after the nodes are killed in `drop`.
    dir: tempfile::TempDir,
}

impl Garage {
    /// Starts the cluster, lays it out, and creates the access key and bucket. Panics (with the
    /// nodes' log tails) if any step fails within [`SETUP_TIMEOUT`].
    pub fn start() -> Garage {
        let bin = garage_bin();
        let dir = tempfile::Builder::new()
            .prefix("ringest-garage-")
            .tempdir()
            .expect("temp dir for garage");
        let secret_hex = random_hex(32);
        let ports = free_ports(GARAGE_NODES * 2);
        let mut g = Garage {
            bin,
            nodes: Vec::new(),
            endpoint: String::new(),
            region: GARAGE_REGION.to_string(),
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
            bucket: "ringest-test".to_string(),
            dir,
        };
        for i in 0..GARAGE_NODES {
            let node_dir = g.dir.path().join(format!("node{i}"));
            fs::create_dir_all(node_dir.join("meta")).unwrap();
            fs::create_dir_all(node_dir.join("data")).unwrap();
            let (rpc_port, s3_port) = (ports[2 * i], ports[2 * i + 1]);
            let config = node_dir.join("garage.toml");
            fs::write(
                &config,
                format!(
                    "metadata_dir = \"{meta}\"\n\
                     data_dir = \"{data}\"\n\
                     db_engine = \"lmdb\"\n\
                     replication_factor = 3\n\
                     rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                     rpc_secret = \"{secret_hex}\"\n\
                     \n\
                     [s3_api]\n\
                     s3_region = \"{GARAGE_REGION}\"\n\
                     api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                     root_domain = \".s3.garage.localhost\"\n",
                    meta = node_dir.join("meta").display(),
                    data = node_dir.join("data").display(),
                ),
            )
            .unwrap();
            g.nodes.push(GarageNode {
                child: None,
                config,
                log: node_dir.join("garage.log"),
                rpc_port,
                s3_port,
                id: String::new(),
            });
        }
        for i in 0..GARAGE_NODES {
            g.spawn_node(i);
        }
        let deadline = Instant::now() + SETUP_TIMEOUT;
        for i in 0..GARAGE_NODES {
            let out = g.cli_retry(i, &["node", "id", "-q"], deadline, "node id");
            // `<hex id>@127.0.0.1:<port>`
            let line = out.stdout_str();
            let id = line.trim().split('@').next().unwrap_or("").to_string();
            assert!(
                id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "unexpected `garage node id` output: {line:?}"
            );
            g.nodes[i].id = id;
        }
        // Every pair, not only node 0 to the others: peer discovery would connect nodes 1 and 2
        // too, but only after a while, and until then their requests miss the quorum.
        for i in 0..GARAGE_NODES {
            for j in i + 1..GARAGE_NODES {
                let peer = format!("{}@127.0.0.1:{}", g.nodes[j].id, g.nodes[j].rpc_port);
                g.cli_retry(i, &["node", "connect", &peer], deadline, "node connect");
            }
        }
        for i in 0..GARAGE_NODES {
            // One zone per node: with three zones, Garage puts each partition's three copies in
            // three different nodes, which is what the stop-one-node tests rely on.
            let id = g.nodes[i].id.clone();
            let zone = format!("z{i}");
            g.cli_retry(
                0,
                &["layout", "assign", "-z", &zone, "-c", "1G", &id],
                deadline,
                "layout assign",
            );
        }
        g.cli_retry(
            0,
            &["layout", "apply", "--version", "1"],
            deadline,
            "layout apply",
        );
        let (key_id, secret) = (g.key_id.clone(), g.secret.clone());
        g.cli_retry(
            0,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "ringest-test",
                &key_id,
                &secret,
            ],
            deadline,
            "key import",
        );
        let bucket = g.bucket.clone();
        g.cli_retry(0, &["bucket", "create", &bucket], deadline, "bucket create");
        g.cli_retry(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", &key_id,
            ],
            deadline,
            "bucket allow",
        );
        g.endpoint = g.nodes[0].endpoint();
        g.wait_healthy(deadline);
        g
    }

    /// Waits until every running node sees every other running node as healthy and serves S3,
    /// so that the first request of a test cannot miss its quorum.
    pub fn wait_healthy(&mut self, deadline: Instant) {
        let mut last = String::new();
        loop {
            self.assert_nodes_alive("wait for a healthy cluster");
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].is_running())
                .collect();
            let mut ok = true;
            for &i in &running {
                let out = self.cli(i, &["status"]);
                let text = out.stdout_str();
                // The healthy section comes first; a "FAILED NODES" section may follow.
                let healthy = text.split("FAILED").next().unwrap_or("");
                let sees_all = out.success()
                    && running
                        .iter()
                        .all(|&j| healthy.contains(&self.nodes[j].id[..16]));
                let serves = std::net::TcpStream::connect_timeout(
                    &([127, 0, 0, 1], self.nodes[i].s3_port).into(),
                    Duration::from_secs(1),
                )
                .is_ok();
                if !(sees_all && serves) {
                    ok = false;
                    last = format!("node {i}: S3 listening: {serves}\n{}", out.describe());
                    break;
                }
            }
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "garage cluster not healthy after {SETUP_TIMEOUT:?}\n{last}\n{}",
                    self.logs(4000)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's S3 endpoint (a test that stops a node talks to another).
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(GarageNode::endpoint).collect()
    }

    /// Kills node `i` (SIGKILL, by its PID) and reaps it: the abrupt loss a node crash or power
    /// cut causes, with no chance to flush or hand over.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again with its old config and data (after [`Garage::stop_node`]); it
    /// rejoins the cluster by itself from its stored peer list. Waits until it answers the CLI.
    pub fn restart_node(&mut self, i: usize) {
        assert!(!self.nodes[i].is_running(), "node {i} is still running");
        self.spawn_node(i);
        let deadline = Instant::now() + SETUP_TIMEOUT;
        self.cli_retry(i, &["node", "id", "-q"], deadline, "node id after restart");
        self.wait_healthy(deadline);
    }

    /// Runs `garage <args>` against node `i` once.
    pub fn cli(&self, i: usize, args: &[&str]) -> CmdOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.nodes[i].config).args(args);
        cmd.env("RUST_LOG", "warn");
        run_cmd(&mut cmd, CLI_TIMEOUT)
    }

    /// The tails of every node's log, for failure messages.
    pub fn logs(&self, n: usize) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            s.push_str(&format!(
                "---- garage node {i} ({}) log tail ----\n{}\n",
                node.endpoint(),
                tail_of_file(&node.log, n)
            ));
        }
        s
    }

    fn spawn_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("garage log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    /// Repeats a CLI step until it succeeds: a node that has just started, or a layout not yet
    /// spread to every node, refuses it for a while.
    fn cli_retry(&mut self, i: usize, args: &[&str], deadline: Instant, what: &str) -> CmdOutput {
        let mut delay = Duration::from_millis(100);
        loop {
            self.assert_nodes_alive(what);
            let out = self.cli(i, args);
            if out.success() {
                return out;
            }
            if Instant::now() + delay > deadline {
                panic!(
                    "garage set-up step `{what}` still failing after {SETUP_TIMEOUT:?}\n{}\n{}",
                    out.describe(),
                    self.logs(4000)
                );
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    fn assert_nodes_alive(&mut self, what: &str) {
        for i in 0..self.nodes.len() {
            let exited = match self.nodes[i].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.nodes[i].child = None;
                panic!(
                    "garage node {i} exited ({status}) during `{what}`\n{}",
                    self.logs(4000)
                );
            }
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
        }
        if thread::panicking() {
            eprintln!("{}", self.logs(4000));
        }
    }
}

/// `n` distinct free TCP ports on 127.0.0.1: all listeners are held until every port is picked,
/// so the kernel cannot hand the same one out twice.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// `n` random bytes as lowercase hex (the RPC secret, the access key).
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
