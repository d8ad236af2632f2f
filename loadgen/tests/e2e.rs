//! End-to-end: start the real `ringest` server on a free port with a temporary root, run `loadgen`
//! against it with `--verify`, and check its exit code and JSON report.
//!
//! The server binary is not a dependency of this package, so it is looked up next to the test
//! executable (`<target>/<profile>/ringest`); `cargo test --release --workspace` builds it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const USER: &str = "u";
const PASSWORD: &str = "p";

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/e2e-<hash>: the server is <target>/<profile>/ringest.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("ringest"))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "the ringest server binary was not found (looked at {candidates:?}); build it first with \
             `cargo build --release` (or run the tests with `cargo test --release --workspace`)"
        )
    })
}

/// A running server, killed (by its PID) when dropped. Its root is `dir`, inside a temporary
/// directory that also holds the self-signed certificate the server creates beside its root.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    cert: PathBuf,
    _base: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Server {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("root");
        let cert = base.path().join("root.tls-cert.pem");
        let mut child = Command::new(server_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--root",
            ])
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ringest");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut port = None;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("ringest: listening on ") {
                port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringest did not print its listening address");
        };
        Server {
            child,
            port,
            dir,
            cert,
            _base: base,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs loadgen with `args` (plus server address, credentials, --json --quiet); returns the exit code
/// and the parsed report.
fn loadgen(server: &Server, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .args([
            "--port",
            &server.port.to_string(),
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--json",
            "--quiet",
        ])
        .args(["--duration", "60", "--op-timeout", "10"])
        .output()
        .expect("running loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("stdout: {stdout}\nstderr: {stderr}"),
    )
}

fn check_scenario(scenario: &str, extra: &[&str]) {
    check_scenario_on(&[], scenario, "0..64K", extra);
}

fn check_scenario_on(server_args: &[&str], scenario: &str, size: &str, extra: &[&str]) {
    let server = Server::start_with(server_args);
    let mut args = vec![
        scenario,
        "--sessions",
        "8",
        "--files",
        "200",
        "--size",
        size,
        "--prefix",
        "e2e",
    ];
    args.extend_from_slice(extra);
    let (code, report, output) = loadgen(&server, &args);
    assert_eq!(code, 0, "loadgen {scenario} failed\n{output}");
    assert_eq!(report["scenario"], scenario, "{output}");
    assert_eq!(report["files_ok"], 200, "{output}");
    assert_eq!(report["files_failed"], 0, "{output}");
    assert_eq!(report["verify"]["verified"], 200, "{output}");
    assert_eq!(report["verify"]["mismatched"], 0, "{output}");
    assert_eq!(report["latency_us"]["count"], 200, "{output}");
    assert!(report["bytes"].as_u64().unwrap_or(0) > 0, "{output}");
    let stored = std::fs::read_dir(server.dir.as_path().join("e2e"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 200, "files under the server root\n{output}");
}

#[test]
fn stream_verify_download() {
    check_scenario("stream", &["--verify"]);
}

/// Uploads of every size up to 300 KiB (most of them not a multiple of the 4 KiB alignment) with
/// O_DIRECT writes from the first byte, and switching after 64 KiB; each one downloaded and compared.
#[test]
fn stream_verify_download_with_direct_io() {
    check_scenario_on(&["--direct-io", "on"], "stream", "0..300K", &["--verify"]);
    check_scenario_on(
        &["--direct-io", "auto", "--direct-io-threshold", "65536"],
        "stream",
        "0..300K",
        &["--verify"],
    );
}

#[test]
fn stream_reconnect_verify_download_epsv() {
    check_scenario(
        "stream-reconnect",
        &[
            "--verify",
            "--epsv",
            "--source-addrs",
            "127.0.0.1-127.0.0.2",
        ],
    );
}

/// `--ok-list` names every acknowledged file, one per line, and nothing else; a second phase
/// appends.
#[test]
fn ok_list_names_the_acknowledged_files() {
    let server = Server::start();
    let list = server.dir.parent().unwrap().join("ok.txt");
    let list_s = list.to_string_lossy().into_owned();
    for (scenario, prefix) in [("stream", "oks"), ("block", "okb")] {
        let args = [
            scenario,
            "--sessions",
            "3",
            "--files",
            "40",
            "--size",
            "0..8K",
            "--prefix",
            prefix,
            "--ok-list",
            &list_s,
        ];
        let (code, report, output) = loadgen(&server, &args);
        assert_eq!(code, 0, "{output}");
        assert_eq!(report["files_ok"], 40, "{output}");
    }
    let mut names: Vec<String> = std::fs::read_to_string(&list)
        .expect("the ok list")
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    let mut want: Vec<String> = ["oks", "okb"]
        .iter()
        .flat_map(|p| (0..40).map(move |i| format!("{p}/f{i}")))
        .collect();
    want.sort();
    assert_eq!(names, want);
    for n in &names {
        assert!(server.dir.join(n).is_file(), "{n} listed but not stored");
    }
}

#[test]
fn stream_verify_dir() {
    let server = Server::start();
    let root = server.dir.as_path().to_string_lossy().into_owned();
    let args = [
        "stream",
        "--sessions",
        "4",
        "--files",
        "50",
        "--size",
        "1..100K",
        "--prefix",
        "vd",
        "--verify-dir",
        &root,
    ];
    let (code, report, output) = loadgen(&server, &args);
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["verify"]["mode"], "dir", "{output}");
    assert_eq!(report["verify"]["verified"], 50, "{output}");
    // Mismatch detection: upload the same content (same seed) again under "vd2", but verify against
    // a copy of the first run's files with one byte flipped.
    let fake = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(fake.path().join("vd2")).expect("mkdir");
    for entry in std::fs::read_dir(server.dir.as_path().join("vd")).expect("stored files") {
        let entry = entry.expect("entry");
        std::fs::copy(
            entry.path(),
            fake.path().join("vd2").join(entry.file_name()),
        )
        .expect("copy");
    }
    let victim = fake.path().join("vd2").join("f7");
    let mut bytes = std::fs::read(&victim).expect("stored file");
    bytes[0] ^= 0xff;
    std::fs::write(&victim, bytes).expect("rewrite");
    let seed = report["seed"].as_u64().expect("seed").to_string();
    let fake_root = fake.path().to_string_lossy().into_owned();
    let args = [
        "stream",
        "--sessions",
        "4",
        "--files",
        "50",
        "--size",
        "1..100K",
        "--prefix",
        "vd2",
        "--seed",
        &seed,
        "--verify-dir",
        &fake_root,
    ];
    let (code, report, output) = loadgen(&server, &args);
    assert_eq!(code, 1, "{output}");
    assert_eq!(report["files_ok"], 50, "{output}");
    assert_eq!(report["verify"]["verified"], 49, "{output}");
    assert_eq!(report["verify"]["mismatched"], 1, "{output}");
}

#[test]
fn block_verify_download() {
    check_scenario("block", &["--verify"]);
}

/// `--pipeline`: each session's next STOR goes out before the last file's 250 is read; every file
/// lands once, byte-exact, and no STOR sent ahead is left behind when the run ends.
#[test]
fn block_pipelined_verify_download() {
    check_scenario("block", &["--pipeline", "--verify"]);
}

/// MODE E byte-exact, downloaded back: empty and one-byte files (EOD on every connection and EOF
/// with no block at all, or one block on one connection) and files of up to 13 blocks of 16 KiB,
/// with one data connection, four, and sixteen (more than ringest's PASV listen backlog of 8, so
/// connections made before the STOR would wait for ever), from two source addresses. Each session
/// opens its connections once; with several, blocks of one file really go over several of them.
#[test]
fn eblock_parallel_1_4_16_verify_download() {
    for parallel in [1u64, 4, 16] {
        let server = Server::start();
        for (size, files) in [("0", 40u64), ("1", 40), ("0..200K", 200)] {
            let prefix = format!("e-{parallel}-{}", size.replace('.', "_"));
            let p = parallel.to_string();
            let n = files.to_string();
            let args = [
                "eblock",
                "--sessions",
                "8",
                "--files",
                &n,
                "--size",
                size,
                "--prefix",
                &prefix,
                "--parallel",
                &p,
                "--block-size",
                "16K",
                "--source-addrs",
                "127.0.0.1-127.0.0.2",
                "--verify",
            ];
            let (code, report, output) = loadgen(&server, &args);
            assert_eq!(code, 0, "eblock -p {parallel} --size {size}\n{output}");
            assert_eq!(report["scenario"], "eblock", "{output}");
            assert_eq!(report["parallel"], parallel, "{output}");
            assert_eq!(report["files_ok"], files, "{output}");
            assert_eq!(report["verify"]["verified"], files, "{output}");
            assert_eq!(report["verify"]["mismatched"], 0, "{output}");
            assert_eq!(report["latency_us"]["count"], files, "{output}");
            assert_eq!(report["retries"], 0, "{output}");
            // One login and one set of data connections per session, kept across its files (a
            // session that found no file left opens none).
            let ctrl = report["control_connections"].as_u64().unwrap_or(0);
            assert!((1..=8).contains(&ctrl), "{output}");
            assert_eq!(report["data_connections"], ctrl * parallel, "{output}");
            let spread = report["files_spread_over_connections"]
                .as_u64()
                .expect("eblock reports files_spread_over_connections");
            if parallel > 1 && files == 200 {
                // Files of more than one block (about 92% of them) spread.
                assert!(
                    spread > 100,
                    "blocks did not interleave: {spread}\n{output}"
                );
            } else {
                assert_eq!(spread, 0, "{output}");
            }
            let stored: Vec<u64> = std::fs::read_dir(server.dir.join(&prefix))
                .map(|d| {
                    d.map(|e| e.expect("entry").metadata().expect("metadata").len())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(stored.len() as u64, files, "{output}");
            assert_eq!(
                stored.iter().sum::<u64>(),
                report["bytes"].as_u64().unwrap_or(u64::MAX),
                "{output}"
            );
        }
    }
}

/// A server without MODE E (ringest without registered buffers answers 504) stops an eblock run
/// at once with exit code 2 and says why.
#[test]
fn eblock_refused_mode_e_is_fatal() {
    let server = Server::start_with(&["--buffers", "0"]);
    let (code, report, output) = loadgen(
        &server,
        &[
            "eblock",
            "--sessions",
            "2",
            "--files",
            "10",
            "--parallel",
            "2",
        ],
    );
    assert_eq!(code, 2, "{output}");
    assert_eq!(report["files_ok"], 0, "{output}");
    let fatal = report["fatal"].as_str().unwrap_or_default();
    assert!(
        fatal.contains("does not support MODE E") && fatal.contains("504"),
        "{output}"
    );
    // MODE E has no TLS data connections: refused before connecting, with the reason.
    let (code, _, output) = loadgen(&server, &["eblock", "--tls", "--insecure"]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("MODE E data connections over TLS"),
        "{output}"
    );
}

/// compare puts stream, block and eblock side by side on the same files: three reports with the
/// same bytes, all verified, and one table row each.
#[test]
fn compare_runs_stream_block_and_eblock() {
    let server = Server::start();
    let port = server.port.to_string();
    let common = [
        "compare",
        "--sessions",
        "4",
        "--files",
        "60",
        "--size",
        "0..100K",
        "--parallel",
        "2",
        "--block-size",
        "32K",
        "--seed",
        "7",
    ];
    let mut args = common.to_vec();
    args.extend(["--prefix", "cmp", "--verify"]);
    let (code, report, output) = loadgen(&server, &args);
    assert_eq!(code, 0, "{output}");
    let bytes = report["stream"]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 0, "{output}");
    for mode in ["stream", "block", "eblock"] {
        assert_eq!(report[mode]["files_ok"], 60, "{mode}\n{output}");
        assert_eq!(report[mode]["verify"]["verified"], 60, "{mode}\n{output}");
        assert_eq!(report[mode]["bytes"], bytes, "{mode}\n{output}");
    }
    assert!(
        report["ratio_eblock_files_per_s"].as_f64().is_some(),
        "{output}"
    );
    assert!(report["ratio_files_per_s"].as_f64().is_some(), "{output}");
    // The human table: a header and one row per mode.
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(common)
        .args(["--prefix", "cmp2", "--port", &port])
        .args(["--user", USER, "--password", PASSWORD, "--quiet"])
        .output()
        .expect("running loadgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("== compare"))
        .skip(2)
        .collect();
    assert_eq!(table.len(), 3, "{text}");
    for (row, label) in table
        .iter()
        .zip(["stream (S)", "block (B)", "eblock (E, p=2)"])
    {
        assert!(row.starts_with(label), "{row:?}\n{text}");
    }
}

#[test]
fn wrong_password_is_fatal() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "stream",
            "--port",
            &server.port.to_string(),
            "--user",
            USER,
            "--password",
            "wrong",
            "--files",
            "3",
        ])
        .args(["--quiet", "--duration", "30"])
        .output()
        .expect("running loadgen");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login"),
        "{out:?}"
    );
}

#[test]
fn stream_with_allo_verify_download() {
    check_scenario("stream", &["--verify", "--allo"]);
}

#[test]
fn server_gone_mid_run_is_fatal_at_once() {
    let mut server = Server::start();
    let started = std::time::Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "stream",
            "--port",
            &server.port.to_string(),
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--sessions",
            "4",
            "--files",
            "10000000",
            "--size",
            "16K",
            "--quiet",
            "--duration",
            "120",
            "--op-timeout",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running loadgen");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = server.child.kill();
    let _ = server.child.wait();
    let killed = std::time::Instant::now();
    let out = child.wait_with_output().expect("loadgen output");
    let after_kill = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is gone (connection refused)"),
        "loadgen should say the server is gone: {stderr}"
    );
    assert!(
        after_kill < std::time::Duration::from_secs(30),
        "loadgen took {after_kill:?} after the server died (run started {:?} ago)",
        started.elapsed()
    );
}

/// Every scenario over FTPS against ringest, byte-exact (downloads verified over TLS too), with
/// every data connection resuming its control connection's session (the server refuses any that
/// does not), and MODE B keeping one protected data connection per session.
#[test]
fn ftps_stream_reconnect_and_block_resume_and_verify() {
    for (scenario, extra) in [
        ("stream", &["--tls"][..]),
        ("stream-reconnect", &["--tls"][..]),
        ("block", &["--tls"][..]),
    ] {
        let server = Server::start_with(&["--tls", "required", "--tls-data", "required"]);
        let cert = server.cert.to_string_lossy().into_owned();
        let mut args = vec![
            scenario,
            "--sessions",
            "4",
            "--files",
            "60",
            "--size",
            "0..200K",
            "--prefix",
            "tls",
            "--verify",
            "--ca",
            &cert,
        ];
        args.extend_from_slice(extra);
        let (code, report, output) = loadgen(&server, &args);
        assert_eq!(code, 0, "loadgen {scenario} over TLS failed\n{output}");
        assert_eq!(report["files_ok"], 60, "{output}");
        assert_eq!(report["verify"]["verified"], 60, "{output}");
        let data = report["tls_data_handshakes"].as_u64().unwrap_or(0);
        assert!(data > 0, "no data handshakes counted\n{output}");
        assert_eq!(report["tls_data_resumed"].as_u64(), Some(data), "{output}");
        assert_eq!(
            report["tls_handshake_failures"].as_u64(),
            Some(0),
            "{output}"
        );
        if scenario == "block" {
            assert!(
                data <= 4,
                "MODE B: one data connection per session, got {data}\n{output}"
            );
        } else {
            assert!(
                data >= 60,
                "stream: one data connection per file, got {data}\n{output}"
            );
        }
        let stored = std::fs::read_dir(server.dir.join("tls"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(stored, 60, "files under the server root\n{output}");
    }
}

/// Stream and MODE B through HAProxy (`send-proxy-v2` on the control port and the passive range),
/// ringest requiring PROXY headers from HAProxy's address: every file lands and the xferlog names
/// the client's address, not the balancer's.
#[test]
fn stream_and_block_through_haproxy() {
    let haproxy = Command::new("haproxy").arg("-v").output();
    assert!(
        haproxy.is_ok_and(|o| o.status.success()),
        "haproxy not found (apt-get install -y haproxy)"
    );
    let (lo, hi) = (26200u16, 26239u16);
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().to_string_lossy().into_owned();
    let range = format!("{lo}-{hi}");
    let server = Server::start_with(&[
        "--proxy-protocol",
        "required",
        "--proxy-from",
        "127.0.0.1",
        "--passive-ports",
        &range,
        "--xferlog",
        &log_path,
    ]);
    let front = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend ftp\n  bind 127.0.0.2:{front}\n  default_backend ftp\n\
             backend ftp\n  source 127.0.0.1\n  server n1 127.0.0.1:{} send-proxy-v2\n\
             frontend pasv\n  bind 127.0.0.2:{lo}-{hi}\n  default_backend pasv\n\
             backend pasv\n  source 127.0.0.1\n  server n1 127.0.0.1 send-proxy-v2\n",
            server.port
        ),
    )
    .unwrap();
    let mut hap = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(cfg.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting haproxy");
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.2", front)).is_ok()
    });
    for scenario in ["stream", "block"] {
        if !up {
            break;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                scenario,
                "--host",
                "127.0.0.2",
                "--port",
                &front.to_string(),
            ])
            .args([
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--sessions",
                "4",
                "--files",
                "100",
            ])
            .args([
                "--size",
                "0..64K",
                "--source-addrs",
                "127.0.0.8",
                "--prefix",
                scenario,
            ])
            .args([
                "--json",
                "--quiet",
                "--duration",
                "60",
                "--op-timeout",
                "10",
            ])
            .output()
            .expect("running loadgen");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        assert_eq!(
            report["files_ok"],
            100,
            "{scenario} through haproxy: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = hap.kill();
    let _ = hap.wait();
    assert!(up, "haproxy did not listen on 127.0.0.2:{front}");
    let xfer = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<&str> = xfer.lines().collect();
    assert_eq!(lines.len(), 200, "{xfer}");
    assert!(lines.iter().all(|l| l.contains(" 127.0.0.8 ")), "{xfer}");
}
