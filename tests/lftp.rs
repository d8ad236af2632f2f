//! Real-client tests with lftp: put/get (passive PASV, passive EPSV, active), ls, cls,
//! mkdir, rm, mirror -R / mirror, against both data paths.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SETTINGS: &str = "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
    set net:reconnect-interval-base 1; set ftp:ssl-allow no; set xfer:clobber on; \
    set cmd:interactive no";

/// Runs `lftp -u user,pass -p PORT 127.0.0.1 -e "SETTINGS; extra; script; bye"` under
/// `timeout`.
fn lftp(srv: &Server, extra_settings: &str, script: &str, timeout_s: u64) -> CmdOutput {
    lftp_script(
        srv,
        &format!("{SETTINGS}; {extra_settings}; {script}; bye"),
        timeout_s,
    )
}

const MODES: [(&str, &str); 3] = [
    ("pasv", "set ftp:passive-mode on; set ftp:prefer-epsv no"),
    ("epsv", "set ftp:passive-mode on; set ftp:prefer-epsv yes"),
    ("active", "set ftp:passive-mode off"),
];

#[test]
fn lftp_put_get_roundtrip() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let local = srv.scratch().join("local");
        let back = srv.scratch().join("back");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(&back).unwrap();
        for (mi, (mode, settings)) in MODES.iter().enumerate() {
            let mut script = String::new();
            let mut names = Vec::new();
            for (si, size) in [0u64, 1, MIB + 1].into_iter().enumerate() {
                let name = format!("{mode}-{size}.bin");
                make_test_file(&local, &name, size, (mi * 10 + si) as u64 + 500);
                script += &format!(
                    "put {} -o {name}; get {name} -o {}; ",
                    local.join(&name).display(),
                    back.join(&name).display()
                );
                names.push(name);
            }
            script += "echo ==LS==; ls; echo ==END==";
            let r = lftp(&srv, settings, &script, 120);
            r.assert_success(&format!("lftp put/get in {mode} mode"));
            for name in &names {
                let src = local.join(name);
                assert_same_file(
                    &src,
                    &srv.root().join(name),
                    &format!("lftp put {name} ({mode}): file on disk"),
                );
                let dl = back.join(name);
                if !dl.exists() && std::fs::metadata(&src).unwrap().len() == 0 {
                    std::fs::write(&dl, b"").unwrap(); // tolerate a client not creating empty files
                }
                assert_same_file(
                    &src,
                    &dl,
                    &format!("lftp get {name} ({mode}): downloaded copy"),
                );
            }
            let out = r.stdout_str();
            let ls = section(&out, "==LS==", "==END==");
            for name in &names {
                assert!(
                    ls.lines().any(|l| l.trim_end().ends_with(name.as_str())),
                    "lftp ls ({mode}) lacks {name}:\n{out}"
                );
            }
        }
    });
}

fn section<'a>(out: &'a str, start: &str, end: &str) -> &'a str {
    let s = out
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("marker {start} not in lftp output:\n{out}"));
    let e = out[s..]
        .find(end)
        .map(|i| s + i)
        .unwrap_or_else(|| panic!("marker {end} not in lftp output:\n{out}"));
    &out[s..e]
}

#[test]
fn lftp_ls_mkdir_cls_rm() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let local = srv.scratch();
        make_test_file(&local, "f1.bin", 12_345, 1);
        make_test_file(&local, "f2.bin", 999, 2);
        let script = format!(
            "mkdir d; mkdir -p d/e/f; put {l}/f1.bin -o f1.bin; cd d; put {l}/f2.bin -o f2.bin; pwd; cd /; \
             echo ==LS==; ls; echo ==CLS==; cls -1; echo ==CLSD==; cls -1 d/; echo ==END==; \
             rm f1.bin; echo ==AFTER-RM==; cls -1; echo ==END2==",
            l = local.display()
        );
        let r = lftp(&srv, "set ftp:passive-mode on", &script, 120);
        r.assert_success("lftp mkdir/put/ls/cls/rm");
        let out = r.stdout_str();
        assert!(
            srv.root().join("d").is_dir(),
            "lftp mkdir d: no directory on disk"
        );
        assert!(
            srv.root().join("d/e/f").is_dir(),
            "lftp mkdir -p d/e/f: no directory on disk"
        );
        assert_same_file(
            &local.join("f2.bin"),
            &srv.root().join("d/f2.bin"),
            "lftp put after cd d",
        );
        assert!(
            !srv.root().join("f1.bin").exists(),
            "lftp rm f1.bin did not delete the file"
        );

        let ls = section(&out, "==LS==", "==CLS==");
        assert!(
            ls.lines().any(|l| l.trim_end().ends_with(" f1.bin")),
            "ls lacks f1.bin:\n{out}"
        );
        assert!(
            ls.lines().any(|l| l.trim_end().ends_with(" d")),
            "ls lacks d:\n{out}"
        );
        let cls: Vec<&str> = section(&out, "==CLS==", "==CLSD==")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let mut cls_names: Vec<String> = cls
            .iter()
            .map(|l| l.trim_end_matches('/').to_string())
            .collect();
        cls_names.sort();
        assert_eq!(cls_names, vec!["d", "f1.bin"], "cls -1 output:\n{out}");
        let clsd = section(&out, "==CLSD==", "==END==");
        assert!(
            clsd.contains("f2.bin") && clsd.contains('e'),
            "cls -1 d/ output lacks f2.bin or e:\n{out}"
        );
        let after = section(&out, "==AFTER-RM==", "==END2==");
        assert!(
            !after.contains("f1.bin"),
            "cls after rm still shows f1.bin:\n{out}"
        );
    });
}

fn make_tree(dir: &Path) -> Vec<(String, u64)> {
    let files: Vec<(String, u64)> = vec![
        ("top.bin".into(), 1),
        ("empty.bin".into(), 0),
        ("a/one.bin".into(), 100_000),
        ("a/two.bin".into(), 65_536),
        ("a/deeper/three.bin".into(), 1_048_577),
        ("b/four.bin".into(), 3),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        write_test_file(&p, *size, 900 + i as u64);
    }
    files
}

#[test]
fn lftp_mirror_reverse_and_back() {
    for_each_data_path(|dp| mirror_reverse_and_back(dp, "set ftp:passive-mode on"));
}

/// The same with lftp pipelining its commands (`ftp:sync-mode off`: PASV, STOR and the next
/// commands go out before their replies are read), which the server answers in batches.
#[test]
fn lftp_mirror_with_pipelined_commands() {
    mirror_reverse_and_back(
        DataPath::Splice,
        "set ftp:passive-mode on; set ftp:sync-mode off",
    );
}

fn mirror_reverse_and_back(dp: DataPath, settings: &str) {
    let srv = Server::start_dp(dp);
    let tree = srv.scratch().join("tree");
    let files = make_tree(&tree);
    let copy = srv.scratch().join("copy");
    let script = format!(
        "mirror -R {} /tree; mirror /tree {}",
        tree.display(),
        copy.display()
    );
    let r = lftp(&srv, settings, &script, 180);
    r.assert_success("lftp mirror -R then mirror");
    for (name, _) in &files {
        assert_same_file(
            &tree.join(name),
            &srv.root().join("tree").join(name),
            &format!("mirror -R: {name} on disk"),
        );
        let dl = copy.join(name);
        if !dl.exists() && std::fs::metadata(tree.join(name)).unwrap().len() == 0 {
            std::fs::write(&dl, b"").unwrap();
        }
        assert_same_file(&tree.join(name), &dl, &format!("mirror back: {name}"));
    }
}

#[test]
fn lftp_wrong_password_fails() {
    let srv = Server::start();
    require_tool("lftp");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60", "lftp", "-u"])
        .arg(format!("{},wrong", srv.user))
        .args(["-p", &srv.port.to_string(), "127.0.0.1", "-e"])
        .arg(format!("{SETTINGS}; set net:max-retries 1; ls; bye"))
        .env("HOME", srv.scratch());
    let r = run_cmd(&mut cmd, Duration::from_secs(80));
    assert!(
        !r.timed_out,
        "lftp with a wrong password hung\n{}",
        r.describe()
    );
    assert!(
        !r.success(),
        "lftp with a wrong password succeeded\n{}",
        r.describe()
    );
    assert!(
        r.code() != Some(124),
        "lftp with a wrong password timed out instead of failing\n{}",
        r.describe()
    );
}
