//! Production features through real clients: resumed uploads and downloads with curl
//! (`-C -`) and lftp (`put -c`, `reput`, `get -c`), and MLSD/MLST/TYPE A/UTF-8 through
//! Python's ftplib (tests/py/prod_ftplib.py).

mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

fn curl() -> Command {
    require_tool("curl");
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "-v",
        "--fail",
        "--connect-timeout",
        "10",
        "--max-time",
        "60",
    ]);
    c
}

fn sent_commands(r: &CmdOutput) -> Vec<String> {
    r.stderr_str()
        .lines()
        .filter_map(|l| l.strip_prefix("> ").map(|s| s.to_string()))
        .collect()
}

#[test]
fn curl_resumes_an_upload() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let local = make_test_file(&srv.scratch(), "up.bin", 3 * MIB + 11, 71);
        let full = fs::read(&local).unwrap();
        // The server holds the first 1 MiB + 3 bytes (an interrupted upload).
        fs::write(srv.root().join("up.bin"), &full[..MIB as usize + 3]).unwrap();
        let r = run_cmd(
            curl()
                .args(["-C", "-", "-T"])
                .arg(&local)
                .arg(srv.url("up.bin")),
            Duration::from_secs(90),
        );
        r.assert_success("curl -C - -T (resume upload)");
        eprintln!("curl sent: {:?}", sent_commands(&r));
        assert_same_file(
            &local,
            &srv.root().join("up.bin"),
            "file resumed by curl -C - -T",
        );
    });
}

#[test]
fn curl_resumes_a_download() {
    let srv = Server::start();
    let remote = make_test_file(srv.root(), "down.bin", 3 * MIB + 17, 72);
    let full = fs::read(&remote).unwrap();
    let out = srv.scratch().join("down.bin");
    fs::write(&out, &full[..777_777]).unwrap();
    let r = run_cmd(
        curl()
            .args(["-C", "-", "-o"])
            .arg(&out)
            .arg(srv.url("down.bin")),
        Duration::from_secs(90),
    );
    r.assert_success("curl -C - -o (resume download)");
    let cmds = sent_commands(&r);
    assert!(
        cmds.iter().any(|c| c == "REST 777777"),
        "curl did not send REST 777777: {cmds:?}"
    );
    assert_same_file(&remote, &out, "download resumed by curl -C -");
}

const LFTP_SETTINGS: &str = "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
    set net:reconnect-interval-base 1; set ftp:ssl-allow no; set xfer:clobber on; \
    set cmd:interactive no; set ftp:passive-mode on";

fn lftp(srv: &Server, script: &str) -> CmdOutput {
    let full = format!(
        "{LFTP_SETTINGS}; debug -o {}/lftp-debug.log 5; {script}; bye",
        srv.scratch().display()
    );
    lftp_script(srv, &full, 90)
}

fn lftp_sent(srv: &Server) -> Vec<String> {
    fs::read_to_string(srv.scratch().join("lftp-debug.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("---> ").map(|(_, c)| c.trim().to_string()))
        .filter(|c| !c.starts_with("PASS"))
        .collect()
}

#[test]
fn lftp_put_c_and_reput_resume_uploads() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let local1 = make_test_file(&srv.scratch(), "p1.bin", 2 * MIB + 5, 73);
        let local2 = make_test_file(&srv.scratch(), "p2.bin", 2 * MIB + 9, 74);
        fs::write(
            srv.root().join("p1.bin"),
            &fs::read(&local1).unwrap()[..600_000],
        )
        .unwrap();
        fs::write(
            srv.root().join("p2.bin"),
            &fs::read(&local2).unwrap()[..1_300_000],
        )
        .unwrap();
        let r = lftp(&srv, "put -c p1.bin -o p1.bin; reput p2.bin -o p2.bin");
        let sent = lftp_sent(&srv);
        eprintln!("lftp sent: {sent:?}");
        r.assert_success("lftp put -c / reput");
        assert!(
            sent.iter()
                .any(|c| c.starts_with("REST ") || c.starts_with("APPE ")),
            "lftp did not resume (no REST/APPE): {sent:?}"
        );
        assert_same_file(&local1, &srv.root().join("p1.bin"), "lftp put -c");
        assert_same_file(&local2, &srv.root().join("p2.bin"), "lftp reput");
    });
}

#[test]
fn lftp_get_c_resumes_a_download() {
    let srv = Server::start();
    let remote = make_test_file(srv.root(), "g.bin", 2 * MIB + 3, 75);
    let full = fs::read(&remote).unwrap();
    fs::write(srv.scratch().join("g.bin"), &full[..900_001]).unwrap();
    let r = lftp(&srv, "get -c g.bin -o g.bin");
    let sent = lftp_sent(&srv);
    r.assert_success("lftp get -c");
    assert!(
        sent.iter().any(|c| c == "REST 900001"),
        "lftp did not send REST 900001: {sent:?}"
    );
    assert_same_file(&remote, &srv.scratch().join("g.bin"), "lftp get -c");
}

#[test]
fn ftplib_mlsd_type_a_and_utf8() {
    require_tool("python3");
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let r = run_cmd(
            Command::new("python3")
                .arg(format!(
                    "{}/tests/py/prod_ftplib.py",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .arg("127.0.0.1")
                .arg(srv.port.to_string())
                .arg(&srv.user)
                .arg(&srv.pass)
                .env("PYTHONDONTWRITEBYTECODE", "1"),
            Duration::from_secs(60),
        );
        // Disk checks first (collected), so a script failure does not hide them.
        let mut problems = Vec::new();
        let want = b"first line\nsecond line\n\nfourth line\n";
        match fs::read(srv.root().join("text.txt")) {
            Ok(b) if b == want => {}
            Ok(b) => problems.push(format!(
                "ftplib storlines (TYPE A) must be stored with LF line ends: got {:?}",
                String::from_utf8_lossy(&b)
            )),
            Err(e) => problems.push(format!("text.txt not on disk: {e}")),
        }
        if fs::read(srv.root().join("ünïcödé näme ✓.txt"))
            .ok()
            .as_deref()
            != Some(&b"utf8 content"[..])
        {
            problems.push("UTF-8 name not on disk with its content".into());
        }
        if !r.success() {
            problems.push(format!("prod_ftplib.py failed:\n{}", r.describe()));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(srv.root().join("mlsd-dir").is_dir());
    });
}

#[test]
fn ftplib_mlsd_with_selected_facts_uses_opts_mlst() {
    require_tool("python3");
    let srv = Server::start();
    let r = run_cmd(
        Command::new("python3")
            .arg(format!(
                "{}/tests/py/prod_ftplib.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg("127.0.0.1")
            .arg(srv.port.to_string())
            .arg(&srv.user)
            .arg(&srv.pass)
            .arg("opts-mlst")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        Duration::from_secs(60),
    );
    r.assert_success(
        "prod_ftplib.py opts-mlst (FEAT advertises MLST facts, so OPTS MLST must work)",
    );
}
