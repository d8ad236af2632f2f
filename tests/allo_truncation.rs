//! Truncated stream-mode uploads caught by ALLO (issue 10, item 3). In MODE S the end of a file is
//! the close of the data connection, so a client killed mid-upload looks like a finished one. lftp
//! announces the size with `set ftp:use-allo yes`; an lftp upload killed mid-way (its job killed
//! with `ftp:use-abor no`, so the data connection just closes, as a dying client's does) must land
//! nothing and be answered 426. Without ALLO, or with `allo_check = false`, the same cut lands a
//! truncated file with 226: the limit the README documents. The exact replies (short, exact and
//! longer uploads, APPE, REST, TYPE A) come from ftplib.

mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::time::Duration;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
const SIZE: u64 = 4 * MIB;

/// Uploads a 4 MiB file with lftp at 256 KB/s as a background job and kills the job after two
/// seconds. Returns lftp's debug log (the commands and replies).
fn lftp_killed_upload(srv: &Server, remote: &str, use_allo: bool, tag: &str) -> String {
    require_tool("lftp");
    let local = srv.scratch().join(format!("{tag}.bin"));
    write_test_file(&local, SIZE, 77);
    let debug = srv.scratch().join(format!("lftp-{tag}.txt"));
    let script = format!(
        "debug -o {} 5; set ftp:use-abor no; set ftp:use-allo {}; set net:limit-rate 262144; \
         set net:max-retries 1; put {} -o {remote} &; sleep 2; kill all; sleep 2; bye",
        debug.display(),
        if use_allo { "yes" } else { "no" },
        local.display()
    );
    let r = lftp_script(srv, &script, CLIENT_TIMEOUT.as_secs());
    let log = fs::read_to_string(&debug).unwrap_or_default();
    assert!(
        !r.timed_out,
        "lftp hung\n{}\n{}",
        r.describe(),
        truncate_middle(&log, 4000)
    );
    log
}

/// A server writing an xferlog; the log lives in the returned directory.
fn xferlog_server(extra: &[&str]) -> (Server, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let xferlog = dir.path().join("xferlog");
    let mut args = vec!["--xferlog".to_string(), xferlog.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let srv = Server::start_with(ServerOpts {
        extra_args: args,
        ..ServerOpts::default()
    });
    (srv, xferlog, dir)
}

#[test]
fn lftp_killed_upload_with_allo_lands_nothing_and_gets_426() {
    let (srv, xferlog, _logdir) = xferlog_server(&[]);
    let log = lftp_killed_upload(&srv, "killed.bin", true, "allo");
    assert!(
        log.contains(&format!("---> ALLO {SIZE}")),
        "lftp did not send ALLO:\n{}",
        truncate_middle(&log, 4000)
    );
    let reply = log
        .lines()
        .find(|l| l.starts_with("<--- 426 "))
        .unwrap_or_else(|| {
            panic!(
                "no 426 after the killed upload:\n{}",
                truncate_middle(&log, 4000)
            )
        });
    assert!(
        reply.contains("bytes announced by ALLO") && reply.contains(&SIZE.to_string()),
        "426 should say the upload ended short of its ALLO: {reply}"
    );
    assert!(
        !log.contains("<--- 226 "),
        "a 226 after the killed upload:\n{log}"
    );
    assert!(
        dir_names(srv.root()).is_empty(),
        "the killed upload landed something: {:?}",
        dir_names(srv.root())
    );
    // The xferlog records it as incomplete ('i'), with the bytes that did arrive.
    let line = wait_for_line(&xferlog, "killed.bin");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.last(), Some(&"i"), "xferlog status: {line}");
    let bytes: u64 = fields[7].parse().unwrap();
    assert!(bytes > 0 && bytes < SIZE, "xferlog bytes {bytes}: {line}");
    srv.assert_serves_new_session("after killed lftp");
}

fn wait_for_line(path: &std::path::Path, needle: &str) -> String {
    let mut found = None;
    wait_until(
        || {
            found = fs::read_to_string(path)
                .ok()
                .and_then(|t| t.lines().find(|l| l.contains(needle)).map(str::to_owned));
            found.is_some()
        },
        Duration::from_secs(10),
    );
    found.unwrap_or_else(|| panic!("no xferlog line for {needle} in {}", path.display()))
}

/// What the server cannot detect: the same cut without ALLO (or with the check switched off)
/// looks like a complete file.
#[test]
fn without_allo_or_with_the_check_off_a_cut_upload_looks_complete() {
    let srv = Server::start();
    let log = lftp_killed_upload(&srv, "noallo.bin", false, "noallo");
    assert!(!log.contains("---> ALLO"), "{log}");
    let len = fs::metadata(srv.root().join("noallo.bin")).map(|m| m.len());
    assert!(
        matches!(len, Ok(n) if n > 0 && n < SIZE),
        "a cut upload without ALLO lands truncated ({len:?}); if this changed, update the README"
    );

    let cfg = srv.scratch().join("off.toml");
    fs::write(&cfg, "allo_check = false\n").unwrap();
    let off = Server::start_with(ServerOpts {
        extra_args: vec!["--config".into(), cfg.display().to_string()],
        ..ServerOpts::default()
    });
    let log = lftp_killed_upload(&off, "off.bin", true, "off");
    assert!(log.contains("---> ALLO"), "{log}");
    assert!(log.contains("<--- 226 "), "allo_check = false: {log}");
    let len = fs::metadata(off.root().join("off.bin")).map(|m| m.len());
    assert!(matches!(len, Ok(n) if n < SIZE), "{len:?}");
}

/// lftp itself killed (SIGKILL) mid-upload: whichever the server notices first, the cut data
/// connection or the closed control connection, nothing lands.
#[test]
fn lftp_process_killed_mid_upload_lands_nothing() {
    require_tool("lftp");
    let srv = Server::start();
    let local = srv.scratch().join("big.bin");
    write_test_file(&local, SIZE, 78);
    let mut child = Command::new("lftp")
        .args(["-u", &format!("{},{}", srv.user, srv.pass)])
        .args(["-p", &srv.port.to_string(), "127.0.0.1", "-e"])
        .arg(format!(
            "set ftp:ssl-allow no; set ftp:use-allo yes; set net:limit-rate 262144; \
             put {} -o sigkill.bin; bye",
            local.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting lftp");
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        dir_names(srv.root()).is_empty(),
        "a killed lftp left {:?}",
        dir_names(srv.root())
    );
    srv.assert_serves_new_session("after SIGKILL");
}

#[test]
fn ftplib_allo_replies() {
    let srv = Server::start();
    let r = client_habits(&srv, "allo", CLIENT_TIMEOUT);
    r.assert_success("ftplib client_habits.py allo");
    let root = srv.root();
    assert!(!root.join("short.bin").exists(), "short upload landed");
    for (name, len) in [
        ("exact.bin", 1000),
        ("longer.bin", 700),
        ("plain.bin", 300),
        ("log.bin", 1000),
        ("after.bin", 10),
    ] {
        assert_eq!(
            fs::metadata(root.join(name)).map(|m| m.len()).ok(),
            Some(len),
            "{name}"
        );
    }
    assert!(root.join("ascii.txt").exists());
}
