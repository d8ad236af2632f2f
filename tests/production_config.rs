//! Configuration: `ringest check-config` on good and bad files, `serve --config`, and the
//! precedence flag > env > file > default.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Dir {
    t: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            t: tempfile::Builder::new()
                .prefix("ringest-cfg-")
                .tempdir()
                .unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.t.path()
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.t.path().join(name);
        fs::write(&p, text).unwrap();
        p
    }
    fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.t.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

fn check_config(file: &Path) -> CmdOutput {
    ringest_cmd(
        &["check-config", file.to_str().unwrap()],
        Duration::from_secs(30),
    )
}

fn users_file(d: &Dir) -> PathBuf {
    let r = ringest_cmd(&["passwd", "--password", "pw"], Duration::from_secs(30));
    r.assert_success("ringest passwd");
    let hash = r.stdout_str().trim().to_string();
    let root = d.mkdir("alice");
    d.write(
        "users.toml",
        &format!(
            "[[user]]\nname = \"alice\"\npassword = \"{hash}\"\nroot = \"{}\"\npermissions = [\"read\", \"write\"]\n\n\
             [anonymous]\nenabled = true\nroot = \"{}\"\nincoming = \"/incoming\"\n",
            root.display(),
            d.mkdir("anon").display()
        ),
    )
}

#[test]
fn check_config_accepts_a_complete_good_file() {
    let d = Dir::new();
    let users = users_file(&d);
    let root = d.mkdir("root");
    let good = d.write(
        "good.toml",
        &format!(
            r#"listen = "127.0.0.1:2121"
root = "{}"
users_file = "{}"
threads = 2
passive_ports = "40000-40100"
passive_address = "127.0.0.1"
data_path = "splice"
buffers = 64
buffer_size = 65536
idle_timeout = 300
data_timeout = 30
login_timeout = 30
max_line = 4096
max_sessions = 100
max_sessions_per_ip = 10
overwrite = "refuse"
fsync = "batch"
log_format = "json"
xferlog = "{}"
metrics_listen = "127.0.0.1:9121"
shutdown_grace = 5
login_fail_delay_ms = 500
max_login_failures_per_ip = 5
"#,
            root.display(),
            users.display(),
            d.path().join("xferlog").display()
        ),
    );
    let r = check_config(&good);
    r.assert_success("check-config on a good file");
    let out = r.stdout_str();
    assert!(
        out.starts_with(&format!("{}: ok", good.display())),
        "check-config stdout should start with 'FILE: ok': {out:?}"
    );
    // A minimal file and an empty file are fine too.
    let r = check_config(&d.write("min.toml", "listen = \"127.0.0.1:0\"\n"));
    r.assert_success("check-config on a minimal file");
    let r = check_config(&d.write("empty.toml", ""));
    r.assert_success("check-config on an empty file");
}

#[test]
fn check_config_rejects_bad_files_naming_the_key() {
    let d = Dir::new();
    let bad_hash_users = d.write(
        "bad-users.toml",
        "[[user]]\nname = \"alice\"\npassword = \"plaintext-not-a-hash\"\nroot = \"/tmp\"\n",
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            "listen = \"127.0.0.1:0\"\nbogus_key = 1\n".into(),
            "bogus_key",
        ),
        ("wrong type", "threads = \"two\"\n".into(), "threads"),
        (
            "wrong type (bool)",
            "idle_timeout = true\n".into(),
            "idle_timeout",
        ),
        (
            "bad port range",
            "passive_ports = \"5-1\"\n".into(),
            "passive_ports",
        ),
        (
            "port range without dash",
            "passive_ports = \"40000\"\n".into(),
            "passive_ports",
        ),
        (
            "port range with port 0",
            "passive_ports = \"0-10\"\n".into(),
            "passive_ports",
        ),
        (
            "bad data_path",
            "data_path = \"turbo\"\n".into(),
            "data_path",
        ),
        (
            "bad listen",
            "listen = \"not-an-address\"\n".into(),
            "listen",
        ),
        (
            "bad overwrite",
            "overwrite = \"maybe\"\n".into(),
            "overwrite",
        ),
        ("bad fsync", "fsync = \"sometimes\"\n".into(), "fsync"),
        (
            "bad log_format",
            "log_format = \"xml\"\n".into(),
            "log_format",
        ),
        (
            "bad metrics_listen",
            "metrics_listen = \"localhost\"\n".into(),
            "metrics_listen",
        ),
        (
            "negative number",
            "max_sessions = -1\n".into(),
            "max_sessions",
        ),
        (
            "missing users file",
            format!(
                "users_file = \"{}\"\n",
                d.path().join("no-such-users.toml").display()
            ),
            "users_file",
        ),
        (
            "users file with a bad hash",
            format!("users_file = \"{}\"\n", bad_hash_users.display()),
            "alice",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, text, key)) in cases.iter().enumerate() {
        let f = d.write(&format!("bad{i}.toml"), text);
        let r = check_config(&f);
        let full = format!("{}{}", r.stdout_str(), r.stderr_str());
        // Only the message, not a backtrace (RUST_BACKTRACE may be set).
        let msg = full
            .split("Stack backtrace")
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if r.timed_out {
            failures.push(format!("{what}: check-config timed out"));
        } else if r.success() {
            failures.push(format!(
                "{what}: check-config exited 0 on {text:?}: {msg:?}"
            ));
        } else if !msg.contains(key) {
            failures.push(format!(
                "{what}: message does not name {key:?}: {msg:?} (file {text:?})"
            ));
        } else {
            eprintln!("{what}: {}", msg.trim());
        }
    }
    // A file that is not TOML at all, and a missing config file.
    let r = check_config(&d.write("garbage.toml", "this is = = not toml [[["));
    if r.success() {
        failures.push("garbage TOML: check-config exited 0".into());
    }
    let r = check_config(&d.path().join("missing.toml"));
    if r.success() {
        failures.push("missing config file: check-config exited 0".into());
    }
    assert!(
        failures.is_empty(),
        "check-config:\n{}",
        failures.join("\n")
    );
}

fn serve_args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--user", "u", "--password", "p", "--threads", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Logs in, uploads `name`, returns nothing; the caller checks where it landed.
fn upload(srv: &ServerProc, name: &str) {
    let mut c = srv.login("u", "p");
    c.cmd_expect("TYPE I", 200);
    let a = c.epsv();
    let mut dconn = std::net::TcpStream::connect(a).unwrap();
    c.send(&format!("STOR {name}"));
    let r = c.read_reply();
    assert!(r.is_prelim(), "STOR {name}: {r}");
    std::io::Write::write_all(&mut dconn, name.as_bytes()).unwrap();
    drop(dconn);
    let r = c.read_reply();
    assert_eq!(r.code, 226, "STOR {name}: {r}");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn serve_config_file_and_precedence() {
    let d = Dir::new();
    let (ra, rb, rc) = (
        d.mkdir("root-file"),
        d.mkdir("root-env"),
        d.mkdir("root-flag"),
    );
    let cfg = d.write(
        "serve.toml",
        &format!(
            "listen = \"127.0.0.3:0\"\nroot = \"{}\"\noverwrite = \"refuse\"\n",
            ra.display()
        ),
    );
    let cfgs = cfg.to_str().unwrap();
    let log = d.path().join("stderr.log");

    // 1. Everything from the file.
    let srv = ServerProc::start(&serve_args(&["--config", cfgs]), &[], &log);
    assert_eq!(
        srv.addr.ip().to_string(),
        "127.0.0.3",
        "listen from the config file"
    );
    assert!(
        srv.stdout()
            .iter()
            .any(|l| l.contains(ra.to_str().unwrap())),
        "stdout does not show the file's root {}: {:?}",
        ra.display(),
        srv.stdout()
    );
    upload(&srv, "one.txt");
    assert_file_content(&ra.join("one.txt"), b"one.txt", "root from the config file");
    // overwrite = "refuse" from the file.
    let mut c = srv.login("u", "p");
    let a = c.try_stor("one.txt", b"again", DataMode::Epsv);
    assert_eq!(
        a.final_code(),
        550,
        "overwrite = refuse from the file: {:?}",
        a.replies
    );
    drop(c);
    drop(srv);

    // 2. Flags override the file.
    let srv = ServerProc::start(
        &serve_args(&[
            "--config",
            cfgs,
            "--listen",
            "127.0.0.1:0",
            "--root",
            rc.to_str().unwrap(),
            "--overwrite",
            "replace",
        ]),
        &[],
        &log,
    );
    assert_eq!(
        srv.addr.ip().to_string(),
        "127.0.0.1",
        "--listen overrides the file"
    );
    upload(&srv, "two.txt");
    assert_file_content(&rc.join("two.txt"), b"two.txt", "--root overrides the file");
    assert!(!ra.join("two.txt").exists());
    upload(&srv, "two.txt"); // replace allowed
    drop(srv);

    // 3. Env overrides the file.
    let rbs = rb.to_str().unwrap();
    let srv = ServerProc::start(
        &serve_args(&["--config", cfgs]),
        &[
            ("RINGEST_LISTEN", "127.0.0.4:0"),
            ("RINGEST_ROOT", rbs),
            ("RINGEST_OVERWRITE", "replace"),
        ],
        &log,
    );
    assert_eq!(
        srv.addr.ip().to_string(),
        "127.0.0.4",
        "RINGEST_LISTEN overrides the file"
    );
    upload(&srv, "three.txt");
    assert_file_content(
        &rb.join("three.txt"),
        b"three.txt",
        "RINGEST_ROOT overrides the file",
    );
    upload(&srv, "three.txt"); // RINGEST_OVERWRITE=replace beats the file's refuse
    drop(srv);

    // 4. A flag overrides the env.
    let srv = ServerProc::start(
        &serve_args(&[
            "--config",
            cfgs,
            "--listen",
            "127.0.0.1:0",
            "--root",
            rc.to_str().unwrap(),
            "--overwrite",
            "refuse",
        ]),
        &[
            ("RINGEST_LISTEN", "127.0.0.4:0"),
            ("RINGEST_ROOT", rbs),
            ("RINGEST_OVERWRITE", "replace"),
        ],
        &log,
    );
    assert_eq!(
        srv.addr.ip().to_string(),
        "127.0.0.1",
        "--listen beats RINGEST_LISTEN"
    );
    upload(&srv, "four.txt");
    assert_file_content(
        &rc.join("four.txt"),
        b"four.txt",
        "--root beats RINGEST_ROOT",
    );
    assert!(!rb.join("four.txt").exists(), "RINGEST_ROOT beat --root");
    let mut c = srv.login("u", "p");
    let a = c.try_stor("four.txt", b"again", DataMode::Pasv);
    assert_eq!(
        a.final_code(),
        550,
        "--overwrite refuse beats RINGEST_OVERWRITE=replace: {:?}",
        a.replies
    );
    drop(c);
    drop(srv);

    // 5. The config file itself from the env (RINGEST_CONFIG).
    let srv = ServerProc::start(&serve_args(&[]), &[("RINGEST_CONFIG", cfgs)], &log);
    assert_eq!(srv.addr.ip().to_string(), "127.0.0.3", "RINGEST_CONFIG");
    drop(srv);
}

#[test]
fn serve_refuses_a_bad_config_file() {
    let d = Dir::new();
    let cfg = d.write("bad.toml", "listen = \"127.0.0.1:0\"\nbogus = 1\n");
    let r = ServerProc::try_start(
        &serve_args(&["--config", cfg.to_str().unwrap()]),
        &[],
        &d.path().join("stderr.log"),
    );
    match r {
        Ok(s) => panic!(
            "serve started with an unknown key in its config file on {}",
            s.addr
        ),
        Err(e) => assert!(
            e.contains("bogus"),
            "start-up error does not name the key: {e}"
        ),
    }
}

#[test]
fn relative_root_in_config_resolves_against_the_file() {
    let d = Dir::new();
    let cfg = d.write(
        "rel.toml",
        "listen = \"127.0.0.1:0\"\nroot = \"data-rel\"\n",
    );
    let elsewhere = d.mkdir("cwd-elsewhere");
    // Run from another directory: the relative root must not depend on the cwd.
    let srv = match ServerProc::try_start_in(
        &serve_args(&["--config", cfg.to_str().unwrap()]),
        &[],
        &d.path().join("stderr.log"),
        Some(&elsewhere),
    ) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    upload(&srv, "rel.txt");
    assert_file_content(
        &d.path().join("data-rel/rel.txt"),
        b"rel.txt",
        "relative root in the config file",
    );
    assert!(!elsewhere.join("data-rel").exists());
}
