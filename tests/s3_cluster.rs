//! Past one machine (issue #12), with real parts on loopback: a 3-node Garage cluster
//! (replication factor 3) as the store, and HAProxy (`send-proxy-v2`) in front of two ringest nodes
//! with `--storage s3`. Clients (curl, lftp, loadgen, and the harness's own FTP client) connect
//! from their own 127.0.0.x addresses; what they uploaded is checked through S3, never through
//! ringest. The harness is tests/common/cluster.rs.
//!
//! The tests of this binary run one at a time (`serial()`): each starts several processes, and the
//! memory and timing checks must not share the two cores with another cluster.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::garage::Garage;
use common::*;

/// Where the loadgen runs keep their files (and the content seed, so a failure can be replayed).
const SEED: u64 = 0x1205_2026;

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ringest-s3test-")
        .tempdir()
        .unwrap()
}

/// Every loadgen file acknowledged in `r` is in the bucket, byte-exact; returns how many.
fn check_acknowledged(c: &Cluster, lg_size: &str, r: &LoadgenResult, ctx: &str) -> usize {
    let bytes = check_loadgen_objects(c, lg_size, SEED, &r.ok, ctx);
    eprintln!(
        "{ctx}: {} acknowledged files ({:.1} MiB) all in the bucket, byte-exact",
        r.ok.len(),
        bytes as f64 / MIB as f64
    );
    r.ok.len()
}

#[test]
fn through_the_balancer_curl_lftp_and_loadgen_land_byte_exact_objects_and_the_nodes_log_the_clients(
) {
    let _serial = serial();
    let c = Cluster::start(2, NodeOpts::default());
    let front = c.front();
    let tmp = scratch();

    // curl: PASV and EPSV, one object in one PUT and one above the part size (multipart).
    let small = make_test_file(tmp.path(), "small.bin", 3 * MIB + 5, 81);
    let big = make_test_file(tmp.path(), "big.bin", 2 * PART + 12_345, 82);
    for (src, file, name, how) in [
        ("127.0.0.5", &small, "curl-pasv.bin", "--disable-epsv"),
        ("127.0.0.6", &big, "curl-epsv.bin", "--ftp-pasv"),
    ] {
        let mut cmd = curl(120);
        cmd.args(["--interface", src, how])
            .arg("-T")
            .arg(file)
            .arg(format!("ftp://{USER}:{PASS}@{front}/{name}"));
        run_cmd(&mut cmd, Duration::from_secs(150)).assert_success(&format!("curl from {src}"));
        c.assert_object(name, &std::fs::read(file).unwrap(), "curl through HAProxy");
    }

    // lftp, bound to its own address, uploads and lists.
    require_tool("lftp");
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["-k", "5", "120", "lftp", "-u"])
        .arg(format!("{USER},{PASS}"))
        .args(["-p", &front.port().to_string(), BALANCER_IP, "-e"])
        .arg(format!(
            "set ftp:ssl-allow no; set net:max-retries 1; set net:socket-bind-ipv4 127.0.0.7; \
             put {} -o lftp.bin; put {} -o lftp-big.bin; ls; bye",
            small.display(),
            big.display()
        ))
        .env("HOME", tmp.path())
        .current_dir(tmp.path());
    let out = run_cmd(&mut cmd, Duration::from_secs(150));
    out.assert_success("lftp through HAProxy");
    assert!(
        out.stdout_str().contains("lftp-big.bin") && out.stdout_str().contains("curl-pasv.bin"),
        "lftp's listing through the balancer misses the objects:\n{}",
        out.describe()
    );
    c.assert_object("lftp.bin", &std::fs::read(&small).unwrap(), "lftp");
    c.assert_object("lftp-big.bin", &std::fs::read(&big).unwrap(), "lftp");

    // Python's ftplib, bound to its own address (control and data connections alike).
    require_tool("python3");
    let script = "import ftplib, sys\n\
        host, port, user, pw, path, src = sys.argv[1:]\n\
        f = ftplib.FTP(source_address=(src, 0), timeout=60)\n\
        f.connect(host, int(port))\n\
        f.login(user, pw)\n\
        with open(path, 'rb') as fh:\n    print(f.storbinary('STOR ftplib.bin', fh))\n\
        f.quit()\n";
    let out = run_cmd(
        std::process::Command::new("python3")
            .args([
                "-c",
                script,
                BALANCER_IP,
                &front.port().to_string(),
                USER,
                PASS,
            ])
            .arg(&big)
            .arg("127.0.0.8"),
        Duration::from_secs(120),
    );
    out.assert_success("ftplib through HAProxy");
    assert!(out.stdout_str().starts_with("226"), "{}", out.describe());
    c.assert_object("ftplib.bin", &std::fs::read(&big).unwrap(), "ftplib");

    // loadgen, stream and MODE B, sessions spread over four client addresses each; sizes on
    // both sides of the part size.
    for (scenario, prefix, files, srcs) in [
        ("stream", "lg-stream", 120u64, "127.0.0.10-127.0.0.13"),
        ("block", "lg-block", 60, "127.0.0.14-127.0.0.17"),
    ] {
        let size = "1K..7M";
        let lg = Loadgen::spawn(
            tmp.path(),
            scenario,
            front,
            size,
            SEED,
            &[
                "--sessions",
                "4",
                "--files",
                &files.to_string(),
                "--source-addrs",
                srcs,
                "--prefix",
                prefix,
                "--duration",
                "240",
                "--verify",
            ],
        );
        let r = lg.wait(Duration::from_secs(300));
        assert_eq!(r.code, Some(0), "loadgen {scenario}: {}", r.describe());
        assert_eq!(r.num("files_ok") as u64, files, "{}", r.describe());
        assert_eq!(r.ok.len() as u64, files, "{}", r.describe());
        let listed = c.list(prefix);
        assert_eq!(
            listed.len() as u64,
            files,
            "objects under {prefix}/: {listed:?}"
        );
        check_acknowledged(&c, size, &r, &format!("loadgen {scenario}"));
    }

    // The nodes logged the clients, never the balancer.
    let logs = c.xferlogs();
    for ip in [
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
        "127.0.0.8",
        "127.0.0.10",
        "127.0.0.13",
        "127.0.0.14",
        "127.0.0.17",
    ] {
        assert!(
            logs.contains(&format!(" {ip} ")),
            "no xferlog line names client {ip}:\n{}",
            truncate_middle(&logs, 3000)
        );
    }
    assert!(
        !logs.contains(&format!(" {BALANCER_SOURCE} ")),
        "an xferlog line names the balancer ({BALANCER_SOURCE}):\n{}",
        truncate_middle(&logs, 3000)
    );
    // Both nodes took sessions (leastconn spreads them).
    for (i, n) in c.nodes.iter().enumerate() {
        assert!(
            !n.xferlog_text().is_empty(),
            "node {i} logged no transfer: the balancer sent it nothing"
        );
    }
}

/// The greeting code of a new session from `src` through the balancer, and the session.
fn open_session(src: Ipv4Addr, c: &Cluster) -> (u16, Ftp) {
    let s = connect_from(src, c.front()).unwrap();
    let mut f = Ftp::from_stream(s, c.front());
    f.set_timeout(Duration::from_secs(20));
    (f.read_reply().code, f)
}

#[test]
fn max_sessions_per_ip_counts_each_client_behind_the_balancer() {
    let _serial = serial();
    let c = Cluster::start(
        2,
        NodeOpts {
            extra: vec!["--max-sessions-per-ip".into(), "2".into()],
            ..NodeOpts::default()
        },
    );
    // Four sessions of one client fill both nodes' share of the balancer's address, if the nodes
    // counted the balancer: then no other client could get in.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (code, f) = open_session(lo(21), &c);
        held.push(f);
        assert_eq!(code, 220, "client 127.0.0.21");
    }
    // Another client still gets in, up to two sessions a node and no more.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let (code, f) = open_session(lo(20), &c);
        codes.push(code);
        if code == 220 {
            held.push(f);
        } else {
            break;
        }
    }
    let accepted = codes.iter().filter(|&&c| c == 220).count();
    assert!(
        (2..=4).contains(&accepted) && codes.last() == Some(&421),
        "sessions of 127.0.0.20 while 127.0.0.21 holds four: {codes:?} (want 2 to 4 accepted \
         (two per node), then 421)"
    );
    let (code, _f) = open_session(lo(22), &c);
    assert_eq!(
        code, 220,
        "a third client is limited by nobody else's sessions"
    );
}

#[test]
fn a_data_connection_from_another_address_is_refused_through_the_balancer() {
    let _serial = serial();
    let c = Cluster::start(2, NodeOpts::default());
    let (owner, thief) = (lo(30), lo(31));
    let mut f = login_from(owner, c.front());
    let data_addr = pasv_addr(&mut f);
    f.send("STOR guarded.bin");
    // The thief reaches the passive port through the balancer first.
    let mut t = connect_from(thief, data_addr).expect("thief connects to the balancer");
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = t.write_all(b"stolen bytes");
    let mut buf = [0u8; 16];
    let n = t.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "the thief's data connection got bytes: {:?}",
        &buf[..n]
    );
    // The owner's connection is then taken.
    let payload = test_bytes(200_000, 31);
    let mut d = connect_from(owner, data_addr).expect("owner's data connection");
    d.write_all(&payload).unwrap();
    drop(d);
    let mut r = f.read_reply();
    if r.is_prelim() {
        r = f.read_reply();
    }
    assert_eq!(r.code, 226, "{}", f.transcript());
    c.assert_object("guarded.bin", &payload, "upload after a refused thief");
    let logged = c
        .nodes
        .iter()
        .any(|n| n.proc.stderr_tail(64 * 1024).contains("127.0.0.31"));
    assert!(
        logged,
        "no node logged the refused data connection from 127.0.0.31:\n{}",
        c.nodes
            .iter()
            .map(|n| n.proc.stderr_tail(2000))
            .collect::<String>()
    );
}

/// An object cannot grow: a MODE E upload, APPE and REST+STOR are refused (504 or 550) through
/// the balancer, and nothing is stored for them.
#[test]
fn mode_e_appe_and_rest_stor_are_refused_on_s3() {
    let _serial = serial();
    let c = Cluster::start(2, NodeOpts::default());
    let src = lo(35);
    let mut f = login_from(src, c.front());
    let data = test_bytes(10_000, 35);
    assert_eq!(
        stor_from(&mut f, src, "base.bin", &data).code,
        226,
        "{}",
        f.transcript()
    );
    let refused = |code: u16| code == 504 || code == 550;

    // MODE E: refused when asked for, or its upload is.
    let r = f.cmd("MODE E");
    if !refused(r.code) {
        assert_eq!(r.code, 200, "MODE E: {}", f.transcript());
        let r = stor_like(&mut f, src, "STOR mode-e.bin", b"");
        assert!(refused(r), "STOR in MODE E: {}", f.transcript());
        assert_eq!(
            c.object("mode-e.bin"),
            None,
            "an object for a refused MODE E upload"
        );
    }
    f.cmd_expect("MODE S", 200);

    let r = stor_like(&mut f, src, "APPE base.bin", b"more");
    assert!(refused(r), "APPE: {}", f.transcript());

    let r = f.cmd("REST 5000");
    if !refused(r.code) {
        assert_eq!(r.code, 350, "REST: {}", f.transcript());
        let r = stor_like(&mut f, src, "STOR base.bin", b"tail");
        assert!(refused(r), "REST 5000 + STOR: {}", f.transcript());
    }
    c.assert_object(
        "base.bin",
        &data,
        "the object after APPE and REST+STOR were refused",
    );
    f.cmd_expect("NOOP", 200);
}

/// `line` (a STOR-like command) over a data connection from `src`; the reply that ends it (the
/// refusal, or the final reply after the data).
fn stor_like(f: &mut Ftp, src: Ipv4Addr, line: &str, data: &[u8]) -> u16 {
    let mut d = pasv_from(f, src);
    f.send(line);
    let first = f.read_reply();
    if !first.is_prelim() {
        return first.code;
    }
    let _ = d.write_all(data);
    drop(d);
    f.read_reply().code
}

/// Waits until at least `n` objects are under `prefix` while `lg` runs; panics if loadgen ends
/// first (the run would not be "mid-run" any more).
fn wait_for_objects(c: &Cluster, lg: &mut Loadgen, prefix: &str, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have = c.list(prefix).len();
        if have >= n {
            assert!(
                lg.running(),
                "loadgen finished before the failure was injected: make the run longer"
            );
            return have;
        }
        assert!(
            lg.running(),
            "loadgen ended with only {have} objects stored"
        );
        assert!(Instant::now() < deadline, "only {have} objects after 120 s");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn stopping_one_garage_node_mid_run_loses_no_acknowledged_object() {
    let _serial = serial();
    let mut c = Cluster::start(2, NodeOpts::default());
    let tmp = scratch();
    let size = "4K..6M";
    let mut lg = Loadgen::spawn(
        tmp.path(),
        "stream",
        c.front(),
        size,
        SEED,
        &[
            "--sessions",
            "8",
            "--files",
            "200",
            "--source-addrs",
            "127.0.0.40-127.0.0.47",
            "--prefix",
            "lg-garage",
            "--duration",
            "240",
        ],
    );
    let before = wait_for_objects(&c, &mut lg, "lg-garage", 15);
    // The nodes talk to Garage nodes 0 and 1; node 2 is the one lost (a node a ringest node
    // talks to directly going away is the store going down, tested below).
    c.garage.stop_node(2);
    let t_stop = Instant::now();
    eprintln!("garage node 2 stopped with {before} objects stored");
    let r = lg.wait(Duration::from_secs(300));
    eprintln!(
        "loadgen after the stop: {} ok, {} failed, {:.1?} after the stop\n{}",
        r.ok.len(),
        r.num("files_failed"),
        t_stop.elapsed(),
        r.describe()
    );
    assert_ne!(
        r.code,
        Some(2),
        "loadgen stopped on a fatal error: {}",
        r.describe()
    );
    assert!(r.ok.len() >= before, "{}", r.describe());
    check_acknowledged(&c, size, &r, "garage node 2 stopped mid-run");
    // Two of three nodes are a quorum: the store still takes new uploads.
    let mut f = login_from(lo(48), c.front());
    let data = test_bytes(3 * MIB as usize, 48);
    let reply = stor_from(&mut f, lo(48), "after-stop.bin", &data);
    assert_eq!(reply.code, 226, "{}", f.transcript());
    c.assert_object("after-stop.bin", &data, "upload with one Garage node down");
}

#[test]
fn killing_one_ringest_node_mid_run_loses_no_acknowledged_object_and_the_other_keeps_serving() {
    let _serial = serial();
    let mut c = Cluster::start(2, NodeOpts::default());
    let tmp = scratch();
    let size = "4K..7M";
    let mut lg = Loadgen::spawn(
        tmp.path(),
        "stream",
        c.front(),
        size,
        SEED,
        &[
            "--sessions",
            "8",
            "--files",
            "200",
            "--source-addrs",
            "127.0.0.50-127.0.0.57",
            "--prefix",
            "lg-kill",
            "--duration",
            "240",
        ],
    );
    wait_for_objects(&c, &mut lg, "lg-kill", 15);
    assert!(
        wait_until(
            || !c.nodes[0].xferlog_text().is_empty(),
            Duration::from_secs(30)
        ),
        "node 0 stored nothing: the kill would hit an idle node"
    );
    let node0 = c.nodes[0].proc.addr;
    c.kill_node(0);
    eprintln!("ringest node 0 killed (SIGKILL)");
    // A killed process's io_uring is torn down after it is reaped, and a listener its ring still
    // held can complete a handshake or two meanwhile (HAProxy then forwards a session there that
    // ends before the greeting). Once the port refuses, HAProxy redispatches to the other node.
    let t_kill = Instant::now();
    assert!(
        wait_until(
            || TcpStream::connect(node0).is_err(),
            Duration::from_secs(10)
        ),
        "node 0's control port still accepts 10 s after SIGKILL"
    );
    eprintln!(
        "node 0's port refuses {:.1?} after the kill",
        t_kill.elapsed()
    );

    // The other node serves new sessions through the balancer right away, small and multipart.
    for i in 0..6u8 {
        let src = lo(60 + i);
        let mut f = login_from(src, c.front());
        let data = test_bytes(
            if i == 0 {
                (PART + 777) as usize
            } else {
                65_536
            },
            60 + i as u64,
        );
        let name = format!("after-kill-{i}.bin");
        let reply = stor_from(&mut f, src, &name, &data);
        assert_eq!(
            reply.code,
            226,
            "session {i} after the kill: {}",
            f.transcript()
        );
        c.assert_object(&name, &data, "upload after a node was killed");
    }

    let r = lg.wait(Duration::from_secs(300));
    eprintln!(
        "loadgen: {} ok, {} failed\n{}",
        r.ok.len(),
        r.num("files_failed"),
        r.describe()
    );
    assert_ne!(
        r.code,
        Some(2),
        "loadgen stopped on a fatal error: {}",
        r.describe()
    );
    check_acknowledged(&c, size, &r, "ringest node 0 killed mid-run");
    // Nothing partial is visible: every object under the prefix, acknowledged or not (the kill
    // may have cut a 226 on its way), is a whole file.
    let listed = c.list("lg-kill");
    let names: Vec<String> = listed.iter().map(|(n, _)| n.clone()).collect();
    for (name, len) in &listed {
        let want = content::size_of(size, SEED, content::id_of(name));
        assert_eq!(
            *len, want,
            "object {name} has {len} bytes of {want}: a partial upload is visible"
        );
    }
    let n = check_loadgen_objects(&c, size, SEED, &names, "every visible object");
    eprintln!(
        "{} objects visible ({:.1} MiB), all whole; {} acknowledged",
        listed.len(),
        n as f64 / MIB as f64,
        r.ok.len()
    );
    // And the surviving node is still up.
    let mut f = login_from(lo(70), c.front());
    f.cmd_expect("NOOP", 200);
}

/// A STOR over a data connection from `src`, the data written by a thread (a store that hangs
/// may stop the server reading): the final reply and the time from the command to it.
fn timed_stor(f: &mut Ftp, src: Ipv4Addr, name: &str, len: usize) -> (u16, Duration) {
    let mut d = pasv_from(f, src);
    let t0 = Instant::now();
    f.send(&format!("STOR {name}"));
    let first = f.read_reply();
    if !first.is_prelim() {
        return (first.code, t0.elapsed());
    }
    let data = test_bytes(len, 7);
    let writer = thread::spawn(move || {
        d.set_write_timeout(Some(Duration::from_secs(60))).ok();
        let _ = d.write_all(&data);
        let _ = d.shutdown(std::net::Shutdown::Write);
    });
    let r = f.read_reply();
    let took = t0.elapsed();
    let _ = writer.join();
    (r.code, took)
}

/// LIST over a data connection from `src`: the final reply and the time it took.
fn timed_list(f: &mut Ftp, src: Ipv4Addr) -> (u16, Duration) {
    let mut d = pasv_from(f, src);
    let t0 = Instant::now();
    f.send("LIST");
    let first = f.read_reply();
    if !first.is_prelim() {
        return (first.code, t0.elapsed());
    }
    d.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let _ = read_all(&mut d);
    let r = f.read_reply();
    (r.code, t0.elapsed())
}

#[test]
fn a_store_that_is_down_answers_451_within_the_s3_timeout_not_a_hang() {
    let _serial = serial();
    const TIMEOUT_S: u64 = 3;
    let bound = Duration::from_secs(2 * TIMEOUT_S + 5);
    let opts = NodeOpts {
        s3_timeout: TIMEOUT_S,
        ..NodeOpts::default()
    };
    let mut g = Garage::start();
    let tmp = scratch();
    let src = lo(1);
    let check = |what: &str, node: &S3Node| {
        let mut f = login_from(src, node.proc.addr);
        for (name, len) in [
            ("down-small.bin", 100_000usize),
            ("down-big.bin", (PART + 1) as usize),
        ] {
            let (code, took) = timed_stor(&mut f, src, name, len);
            eprintln!("{what}: STOR {name}: {code} after {took:.1?}");
            assert_eq!(code, 451, "{what}: STOR {name}: {}", f.transcript());
            assert!(
                took < bound,
                "{what}: STOR {name} answered after {took:?} (bound {bound:?})"
            );
        }
        let (code, took) = timed_list(&mut f, src);
        eprintln!("{what}: LIST: {code} after {took:.1?}");
        assert_eq!(code, 451, "{what}: LIST: {}", f.transcript());
        assert!(
            took < bound,
            "{what}: LIST answered after {took:?} (bound {bound:?})"
        );
        // The session and the server are still there.
        f.cmd_expect("NOOP", 200);
        let mut f2 = login_from(src, node.proc.addr);
        f2.cmd_expect("NOOP", 200);
        let errors = node.metric("ringest_s3_errors_total").unwrap_or(0.0);
        assert!(errors > 0.0, "{what}: ringest_s3_errors_total is {errors}");
    };

    // The node stores while the store is up; then the store goes away under it.
    let stores_first = |node: &S3Node, name: &str| {
        let mut f = login_from(src, node.proc.addr);
        let data = test_bytes(50_000, 5);
        let r = stor_from(&mut f, src, name, &data);
        assert_eq!(r.code, 226, "{}", f.transcript());
        let s3 = common::s3::S3::for_garage(&g);
        assert_eq!(
            s3.get(&Cluster::key(name)).unwrap().as_deref(),
            Some(&data[..]),
            "{name} through S3"
        );
    };
    let upstream: std::net::SocketAddr = g.endpoint.trim_start_matches("http://").parse().unwrap();

    // 1. A store that takes connections and never answers (old pooled connections included).
    let gate = StoreGate::start(upstream);
    let node = S3Node::start(&g, &gate.endpoint(), tmp.path(), "hang", &opts, false);
    stores_first(&node, "before-hang.bin");
    gate.set(StoreGate::HANG);
    check("store that never answers", &node);
    drop(node);
    drop(gate);

    // 2. A store whose port refuses (its connections cut).
    let gate = StoreGate::start(upstream);
    let node = S3Node::start(&g, &gate.endpoint(), tmp.path(), "closed", &opts, false);
    stores_first(&node, "before-close.bin");
    gate.set(StoreGate::CLOSED);
    check("store port closed", &node);
    drop(node);
    drop(gate);

    // 3. Every Garage node stopped.
    let node = S3Node::start(
        &g,
        &g.endpoint.clone(),
        tmp.path(),
        "all-stopped",
        &opts,
        false,
    );
    stores_first(&node, "before-stop.bin");
    for i in 0..3 {
        g.stop_node(i);
    }
    check("all Garage nodes stopped", &node);
}

/// A GET of `path` from `addr` over a plain TCP stream (cheaper than curl every 100 ms).
fn http_get_body(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

#[test]
fn thousands_of_concurrent_2mib_uploads_keep_the_server_rss_within_the_memory_cap() {
    let _serial = serial();
    const CAP: u64 = 64 * MIB;
    const SESSIONS: usize = 300;
    const FILES: u64 = 2000;
    let before_fds = raise_nofile(8192);
    assert!(
        before_fds >= 2 * SESSIONS as u64 + 100,
        "RLIMIT_NOFILE {before_fds}"
    );
    let g = Garage::start();
    let tmp = scratch();
    let opts = NodeOpts {
        passive_ports: 2 * SESSIONS as u16,
        memory_cap: Some(CAP),
        s3_timeout: 60,
        ..NodeOpts::default()
    };
    let node = S3Node::start(&g, &g.endpoint.clone(), tmp.path(), "rss", &opts, false);
    let pid = node.proc.pid();
    let idle = node.rss_kib();
    let idle_parts = rss_parts(pid);
    // Warm up: one upload (the S3 client's threads and connections exist after it).
    let mut f = login_from(lo(1), node.proc.addr);
    assert_eq!(
        stor_from(&mut f, lo(1), "warm.bin", &test_bytes(2 * MIB as usize, 9)).code,
        226,
        "{}",
        f.transcript()
    );
    drop(f);
    thread::sleep(Duration::from_millis(300));
    let warm = node.rss_kib();
    // The same number of sessions, logged in and idle: what sessions cost without uploads.
    let sessions: Vec<Ftp> = (0..SESSIONS)
        .map(|i| login_from(lo(100 + (i % 50) as u8), node.proc.addr))
        .collect();
    thread::sleep(Duration::from_millis(500));
    let with_sessions = node.rss_kib();
    drop(sessions);
    let baseline = warm.max(with_sessions);
    eprintln!(
        "rss: idle {idle} KiB ({idle_parts}), after one upload {warm} KiB, with {SESSIONS} idle sessions \
         {with_sessions} KiB; baseline {baseline} KiB; cap {} KiB",
        CAP / 1024
    );

    // Metrics sampled beside the RSS.
    let stop = Arc::new(AtomicBool::new(false));
    let maxes = Arc::new(Mutex::new([0f64; 4]));
    let (s, m, addr) = (stop.clone(), maxes.clone(), node.metrics.clone());
    let sampler = thread::spawn(move || {
        let names = [
            "ringest_s3_bytes_buffered",
            "ringest_s3_parts_in_flight",
            "ringest_s3_uploads_waiting",
            "ringest_s3_errors_total",
        ];
        let end = Instant::now() + Duration::from_secs(600);
        while !s.load(Ordering::Relaxed) && Instant::now() < end {
            if let Some(body) = http_get_body(&addr, "/metrics") {
                let mut g = m.lock().unwrap();
                for (i, n) in names.iter().enumerate() {
                    if let Some(v) = metric(&body, n) {
                        g[i] = g[i].max(v);
                    }
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let rss = RssSampler::start(pid);
    let size = "2M";
    let lg = Loadgen::spawn(
        tmp.path(),
        "stream",
        node.proc.addr,
        size,
        SEED,
        &[
            "--sessions",
            &SESSIONS.to_string(),
            "--files",
            &FILES.to_string(),
            "--source-addrs",
            "127.0.0.100-127.0.0.149",
            "--prefix",
            "lg-rss",
            "--duration",
            "400",
            "--op-timeout",
            "120",
        ],
    );
    let r = lg.wait(Duration::from_secs(450));
    let (peak, samples, parts) = rss.finish();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let m = *maxes.lock().unwrap();
    eprintln!(
        "{FILES} x {size} over {SESSIONS} sessions in {:.1?}: peak RSS {peak} KiB ({parts}) over \
         {samples} samples; baseline {baseline} KiB + cap {} KiB = {} KiB; max s3 bytes_buffered {} \
         ({:.1} MiB), parts_in_flight {}, uploads_waiting {}, errors_total {}",
        r.elapsed,
        CAP / 1024,
        baseline + CAP / 1024,
        m[0],
        m[0] / MIB as f64,
        m[1],
        m[2],
        m[3]
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(r.ok.len() as u64, FILES, "{}", r.describe());
    assert!(samples >= 10, "only {samples} RSS samples");
    assert!(
        peak < baseline + CAP / 1024,
        "peak RSS {peak} KiB is above the baseline {baseline} KiB + the cap {} KiB",
        CAP / 1024
    );
    assert!(
        m[0] <= CAP as f64,
        "ringest_s3_bytes_buffered reached {} > cap {CAP}",
        m[0]
    );
    let listed = c_list(&g, "lg-rss");
    assert_eq!(listed.len() as u64, FILES, "objects under lg-rss/");
    for (name, len) in &listed {
        assert_eq!(*len, 2 * MIB, "{name}");
    }
    // A sample of the objects, byte-exact (all of them would be 4 GiB of GETs).
    let s3 = common::s3::S3::for_garage(&g);
    for name in r.ok.iter().step_by(97) {
        let want = expected_loadgen(size, SEED, name);
        let got = s3.get(&Cluster::key(name)).unwrap().expect(name);
        assert_bytes_eq(&want, &got, name);
    }
}

/// Objects under FTP directory `dir` of [`USER`] in `g`'s bucket, with sizes.
fn c_list(g: &Garage, dir: &str) -> Vec<(String, u64)> {
    let s3 = common::s3::S3::for_garage(g);
    s3.list_all(&format!("{USER}/{dir}/"))
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !k.ends_with('/'))
        .collect()
}

/// The harness's own gate (what the store-down test puts between a node and Garage): forwards,
/// then hangs old and new connections alike, then refuses.
#[test]
fn the_store_gate_forwards_then_hangs_then_refuses() {
    let _serial = serial();
    let g = Garage::start();
    let upstream: std::net::SocketAddr = g.endpoint.trim_start_matches("http://").parse().unwrap();
    let gate = StoreGate::start(upstream);
    let s3 = common::s3::S3::new(&gate.endpoint(), &g.region, &g.bucket, &g.key_id, &g.secret);
    s3.put("gate/a", b"through the gate").unwrap();
    assert_eq!(
        s3.get("gate/a").unwrap().as_deref(),
        Some(&b"through the gate"[..])
    );
    // An open connection, then the hang: neither it nor a new one gets an answer.
    let mut old = TcpStream::connect(gate.addr).unwrap();
    let request = format!("GET /{}/gate/a HTTP/1.1\r\nHost: x\r\n\r\n", g.bucket);
    old.write_all(request.as_bytes()).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        old.read(&mut buf).unwrap() > 0,
        "forwarded request answered"
    );
    gate.set(StoreGate::HANG);
    thread::sleep(Duration::from_millis(300));
    let mut new = TcpStream::connect(gate.addr).unwrap();
    for s in [&mut old, &mut new] {
        s.write_all(request.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert!(s.read(&mut buf).is_err(), "a hanging store answered");
    }
    gate.set(StoreGate::CLOSED);
    assert!(
        TcpStream::connect(gate.addr).is_err(),
        "the closed gate still takes connections"
    );
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        !matches!(old.read(&mut buf), Ok(n) if n > 0),
        "a connection survived the close"
    );
}
