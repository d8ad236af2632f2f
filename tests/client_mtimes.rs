//! Keeping modification times and modes (issue 10, item 2): `lftp mirror -R` with MFMT, with the
//! two-argument `SITE UTIME` and with the five-argument form, each without errors and with the
//! local mtimes and modes on the server; `ncftpput` with MFMT, SITE UTIME and the two-argument
//! MDTM; ftplib for the exact replies; and the SITE CHMOD mask from the configuration.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn mtime(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A small tree with old times and distinct modes: a.txt (0640, 2020-03-04 05:06:07), d/b.bin
/// (0604, 2019-01-02 03:04:05), d/ (0750).
fn local_tree(base: &Path) -> Vec<(&'static str, u64, u32)> {
    let files = vec![
        ("a.txt", 1_583_298_367u64, 0o640u32),
        ("d/b.bin", 1_546_398_245, 0o604),
    ];
    fs::create_dir_all(base.join("d")).unwrap();
    fs::write(base.join("a.txt"), b"aaa\n").unwrap();
    write_test_file(&base.join("d/b.bin"), 300_000, 5);
    for (name, t, m) in &files {
        let p = base.join(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(*m)).unwrap();
        set_mtime(&p, *t);
    }
    fs::set_permissions(base.join("d"), fs::Permissions::from_mode(0o750)).unwrap();
    files
}

#[test]
fn lftp_mirror_r_keeps_mtimes_and_modes() {
    require_tool("lftp");
    let srv = Server::start();
    let local = srv.scratch().join("tree");
    let files = local_tree(&local);
    // (settings, the time-setting command lftp must have used)
    for (i, (settings, want_cmd)) in [
        ("", "---> MFMT 20200304050607 "),
        ("set ftp:use-feat no;", "---> SITE UTIME 20200304050607 "),
        (
            "set ftp:use-feat no; set ftp:use-site-utime2 no;",
            "---> SITE UTIME a.txt 20200304050607 20200304050607 20200304050607 UTC",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let remote = format!("m{i}");
        let debug = srv.scratch().join(format!("lftp-debug-{i}.txt"));
        let script = format!(
            "debug -o {} 5; set cmd:fail-exit yes; set net:max-retries 1; {settings} \
             mirror -R --verbose {} /{remote}; bye",
            debug.display(),
            local.display()
        );
        let r = lftp_script(&srv, &script, CLIENT_TIMEOUT.as_secs());
        let log = fs::read_to_string(&debug).unwrap_or_default();
        let what = format!("lftp mirror -R with [{settings}]");
        r.assert_success(&what);
        let out = format!("{}{}", r.stdout_str(), r.stderr_str());
        assert!(
            !out.to_ascii_lowercase().contains("error") && !out.contains("not supported"),
            "{what} printed an error:\n{}",
            r.describe()
        );
        assert!(
            log.contains(want_cmd),
            "{what}: expected lftp to send {want_cmd:?}; its log:\n{}",
            truncate_middle(&log, 6000)
        );
        assert!(
            log.contains("---> SITE CHMOD 640 "),
            "{what}: lftp did not send SITE CHMOD"
        );
        for (name, t, m) in &files {
            let on_server = srv.root().join(&remote).join(name);
            assert_same_file(&local.join(name), &on_server, &what);
            assert_eq!(mtime(&on_server), *t, "{what}: mtime of {name}");
            assert_eq!(mode(&on_server), *m, "{what}: mode of {name}");
        }
        assert_eq!(mode(&srv.root().join(&remote).join("d")), 0o750, "{what}");
    }
}

#[test]
fn ncftpput_keeps_mtimes() {
    require_tool("ncftpput");
    let srv = Server::start();
    let home = srv.scratch().join("home");
    fs::create_dir_all(&home).unwrap();
    // (ncftpput options, the command it must have used)
    for (i, (opts, want_cmd)) in [
        (&[][..], "Cmd: MFMT 2018"),
        (&["-o", "!FEAT"][..], "Cmd: SITE UTIME up1.bin "),
        (&["-o", "!FEAT,!SITE_UTIME"][..], "Cmd: MDTM 2018"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("up{i}.bin");
        let file = srv.scratch().join(&name);
        write_test_file(&file, 70_000, 30 + i as u64);
        let t = 1_514_862_245 + i as u64 * 3600; // 2018-01-02 03:04:05 UTC, then +1 h each
        set_mtime(&file, t);
        let log = srv.scratch().join(format!("ncftpput-{i}.log"));
        let r = run_cmd(
            Command::new("ncftpput")
                .args(opts)
                .args(["-y", "-m", "-u", &srv.user, "-p", &srv.pass])
                .args(["-P", &srv.port.to_string(), "-d"])
                .arg(&log)
                .args(["127.0.0.1", "/nc"])
                .arg(&file)
                .env("HOME", &home),
            CLIENT_TIMEOUT,
        );
        let what = format!("ncftpput {opts:?}");
        r.assert_success(&what);
        let log = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            log.contains(want_cmd),
            "{what}: expected {want_cmd:?} in its log:\n{}",
            truncate_middle(&log, 6000)
        );
        let on_server = srv.root().join("nc").join(&name);
        assert_same_file(&file, &on_server, &what);
        assert_eq!(mtime(&on_server), t, "{what}: mtime");
    }
}

#[test]
fn ftplib_time_and_chmod_replies() {
    let srv = Server::start();
    let r = client_habits(&srv, "times", CLIENT_TIMEOUT);
    r.assert_success("ftplib client_habits.py times");
    let t = srv.root().join("t.bin");
    assert_eq!(mtime(&t), 1_483_326_245, "t.bin: 2017-01-02 03:04:05");
    assert_eq!(mode(&t), 0o640, "t.bin after SITE CHMOD 640");
    assert_eq!(
        mode(&srv.root().join("tdir")),
        0o755,
        "SITE CHMOD 4755: setuid masked"
    );
    assert_eq!(mtime(&srv.root().join("tdir")), 1_583_298_367, "tdir");
}

#[test]
fn chmod_mask_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    for (mask, want) in [("0750", Some(0o640)), ("0", None)] {
        let cfg = dir.path().join(format!("mask-{mask}.toml"));
        fs::write(&cfg, format!("chmod_mask = \"{mask}\"\n")).unwrap();
        let srv = Server::start_with(ServerOpts {
            extra_args: vec!["--config".into(), cfg.display().to_string()],
            ..ServerOpts::default()
        });
        fs::write(srv.root().join("f"), b"x").unwrap();
        let mut c = srv.login();
        let r = c.cmd("SITE CHMOD 666 f");
        match want {
            Some(m) => {
                assert_eq!(r.code, 200, "mask {mask}: {r}");
                assert_eq!(mode(&srv.root().join("f")), m, "mask {mask}");
            }
            None => assert_eq!(r.code, 550, "mask 0 turns SITE CHMOD off: {r}"),
        }
        c.cmd_expect("QUIT", 221);
    }
}
