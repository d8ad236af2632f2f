//! Observability: xferlog lines, Prometheus metrics endpoint, JSON logs on stderr.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::thread;
use std::time::Duration;

fn start(extra: &[String]) -> Server {
    Server::start_with(ServerOpts {
        extra_args: extra.to_vec(),
        ..ServerOpts::default()
    })
}

fn lines_of(p: &std::path::Path) -> Vec<String> {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| l.to_string())
        .collect()
}

/// Checks one xferlog line; returns its fields.
fn check_xferlog_line(line: &str) -> Vec<String> {
    let f: Vec<String> = line.split_whitespace().map(|s| s.to_string()).collect();
    assert_eq!(
        f.len(),
        18,
        "xferlog line must have 18 fields (5 of date): {line:?}"
    );
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(DAYS.contains(&f[0].as_str()), "weekday: {line:?}");
    assert!(MONTHS.contains(&f[1].as_str()), "month: {line:?}");
    assert!(
        f[2].parse::<u32>()
            .map(|d| (1..=31).contains(&d))
            .unwrap_or(false),
        "day: {line:?}"
    );
    assert!(
        f[3].len() == 8 && f[3].as_bytes()[2] == b':' && f[3].as_bytes()[5] == b':',
        "time: {line:?}"
    );
    assert!(
        f[4].parse::<u32>().map(|y| y >= 2024).unwrap_or(false),
        "year: {line:?}"
    );
    assert!(f[5].parse::<u64>().is_ok(), "transfer time: {line:?}");
    assert_eq!(f[6], "127.0.0.1", "remote host: {line:?}");
    assert!(f[7].parse::<u64>().is_ok(), "bytes: {line:?}");
    assert!(f[9] == "b" || f[9] == "a", "transfer type: {line:?}");
    assert_eq!(f[10], "_", "special action: {line:?}");
    assert!(f[11] == "i" || f[11] == "o", "direction: {line:?}");
    assert!(f[12] == "r" || f[12] == "a", "access mode: {line:?}");
    assert_eq!(f[14], "ftp", "service: {line:?}");
    assert!(f[17] == "c" || f[17] == "i", "completion: {line:?}");
    f
}

#[test]
fn xferlog_records_uploads_downloads_and_aborts() {
    let dir = tempfile::Builder::new()
        .prefix("ringest-xfer-")
        .tempdir()
        .unwrap();
    let log = dir.path().join("xferlog");
    let srv = start(&["--xferlog".into(), log.to_str().unwrap().into()]);
    let data = test_bytes(123_457, 51);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.stor("xl.bin", &data, DataMode::Pasv);
    let back = c.retr("xl.bin", DataMode::Pasv);
    assert_eq!(back.len(), data.len());
    assert!(
        wait_until(|| lines_of(&log).len() >= 2, Duration::from_secs(5)),
        "xferlog has {:?} after an upload and a download",
        lines_of(&log)
    );
    thread::sleep(Duration::from_millis(200));
    let lines = lines_of(&log);
    assert_eq!(
        lines.len(),
        2,
        "xferlog after one upload and one download: {lines:?}"
    );
    let up = check_xferlog_line(&lines[0]);
    let down = check_xferlog_line(&lines[1]);
    for (f, dir) in [(&up, "i"), (&down, "o")] {
        assert_eq!(f[7], "123457", "bytes: {f:?}");
        assert!(f[8] == "/xl.bin" || f[8] == "xl.bin", "file name: {f:?}");
        assert_eq!(f[9], "b", "binary: {f:?}");
        assert_eq!(f[11], dir, "direction: {f:?}");
        assert_eq!(f[12], "r", "real user: {f:?}");
        assert_eq!(f[13], srv.user, "user: {f:?}");
        assert_eq!(f[17], "c", "completion: {f:?}");
    }
    // An aborted upload: completion `i`.
    let mut d = c.begin_transfer("STOR aborted.bin");
    d.write_all(&test_bytes(300_000, 52)).unwrap();
    thread::sleep(Duration::from_millis(200));
    c.send("ABOR");
    let r1 = c.read_reply();
    let r2 = c.read_reply();
    assert_eq!((r1.code, r2.code), (426, 226), "ABOR: {r1} / {r2}");
    drop(d);
    assert!(
        wait_until(|| lines_of(&log).len() >= 3, Duration::from_secs(5)),
        "no xferlog line for the aborted upload: {:?}",
        lines_of(&log)
    );
    let lines = lines_of(&log);
    let ab = check_xferlog_line(&lines[2]);
    assert!(
        ab[8].ends_with("aborted.bin"),
        "aborted line names the file: {:?}",
        lines[2]
    );
    assert_eq!(ab[11], "i", "aborted upload direction: {:?}", lines[2]);
    assert!(
        lines[2].ends_with(" i"),
        "aborted upload must end with completion ' i': {:?}",
        lines[2]
    );
    // TYPE A download is logged as `a`.
    c.cmd_expect("TYPE A", 200);
    fs::write(srv.root().join("t.txt"), b"a\nb\n").unwrap();
    c.retr("t.txt", DataMode::Pasv);
    assert!(wait_until(
        || lines_of(&log).len() >= 4,
        Duration::from_secs(5)
    ));
    let f = check_xferlog_line(&lines_of(&log)[3]);
    assert_eq!(
        (f[9].as_str(), f[11].as_str(), f[17].as_str()),
        ("a", "o", "c"),
        "TYPE A download: {f:?}"
    );
    c.cmd_expect("QUIT", 221);
}

/// GET http://addr/path with curl: (status, body).
#[test]
fn metrics_endpoint_counts_files_and_failed_logins() {
    let srv = start(&[
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
        "--login-fail-delay-ms".into(),
        "10".into(),
    ]);
    let addr = metrics_addr(&srv.stdout_lines);
    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200, "GET /metrics: {body}");
    let files_in = "ringest_files_total{direction=\"in\",mode=\"stream\"}";
    let failed = "ringest_logins_total{result=\"failed\"}";
    let base_files = metric(&body, files_in).unwrap_or(0.0);
    let base_failed = metric(&body, failed).unwrap_or(0.0);
    assert_eq!(base_files, 0.0, "files before any upload:\n{body}");
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    for i in 0..3 {
        c.stor(
            &format!("m{i}.bin"),
            &test_bytes(10_000 + i, 60 + i as u64),
            DataMode::Pasv,
        );
    }
    c.cmd_expect("QUIT", 221);
    let mut bad = Ftp::connect(srv.addr);
    bad.cmd_expect(&format!("USER {}", srv.user), 331);
    bad.cmd_expect("PASS definitely-wrong", 530);
    drop(bad);
    let mut last = String::new();
    let ok = wait_until(
        || {
            let (_, b) = http_get(&addr, "/metrics");
            let good =
                metric(&b, files_in) == Some(3.0) && metric(&b, failed) == Some(base_failed + 1.0);
            last = b;
            good
        },
        Duration::from_secs(5),
    );
    assert!(
        ok,
        "after 3 uploads and 1 failed login expected {files_in} 3 and {failed} {}; got:\n{last}",
        base_failed + 1.0
    );
    let (code, _) = http_get(&addr, "/other");
    assert_eq!(code, 404, "GET /other");
    let (code, _) = http_get(&addr, "/");
    assert_eq!(code, 404, "GET /");
}

#[test]
fn json_log_format_writes_json_lines() {
    require_tool("python3");
    let mut srv = start(&["--log-format".into(), "json".into()]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.stor("j.bin", b"json", DataMode::Pasv);
    c.cmd_expect("QUIT", 221);
    let mut bad = Ftp::connect(srv.addr);
    bad.cmd_expect("USER nobody", 331);
    let _ = bad.cmd("PASS wrong");
    drop(bad);
    thread::sleep(Duration::from_millis(300));
    srv.signal(libc::SIGTERM);
    let _ = srv.wait_exit(Duration::from_secs(10));
    let path = srv.stderr_path();
    let text = fs::read_to_string(&path).unwrap();
    let n = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(n >= 1, "no log lines on stderr with --log-format json");
    let r = run_cmd(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import json,sys\n\
             bad=[]\n\
             for i,l in enumerate(open(sys.argv[1],encoding='utf-8')):\n\
             \x20   if not l.strip(): continue\n\
             \x20   try:\n\
             \x20       o=json.loads(l)\n\
             \x20       assert isinstance(o,dict)\n\
             \x20   except Exception as e: bad.append((i,l[:200],str(e)))\n\
             print(bad); sys.exit(1 if bad else 0)",
            )
            .arg(&path),
        Duration::from_secs(20),
    );
    assert!(
        r.success(),
        "stderr lines that are not JSON objects:\n{}\n--- stderr ---\n{}",
        r.describe(),
        truncate_middle(&text, 3000)
    );
    eprintln!("{n} JSON log lines OK");
}
