//! Real-client tests with curl: uploads (-T) and downloads in EPSV, PASV, active EPRT
//! and active PORT mode, against both data paths; listings; --ftp-create-dirs; -Q
//! commands; error exit codes; 256 MiB files.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SIZES: [u64; 3] = [0, 1, MIB + 1];

fn run_curl(cmd: &mut Command, max_time_s: u64) -> CmdOutput {
    run_cmd(cmd, Duration::from_secs(max_time_s + 30))
}

/// curl silently falls back from EPSV to PASV and from EPRT to PORT; with `-v` we
/// check in its trace that the intended command was used (and no fallback happened).
fn data_command_of(mode_args: &[&str]) -> (&'static str, Option<&'static str>) {
    if mode_args.contains(&"-P") {
        if mode_args.contains(&"--disable-eprt") {
            ("PORT", Some("EPRT"))
        } else {
            ("EPRT", Some("PORT"))
        }
    } else if mode_args.contains(&"--disable-epsv") {
        ("PASV", Some("EPSV"))
    } else {
        ("EPSV", Some("PASV"))
    }
}

fn check_trace(r: &CmdOutput, mode_args: &[&str], what: &str) {
    let (must, must_not) = data_command_of(mode_args);
    let trace = r.stderr_str();
    let sent = |c: &str| trace.lines().any(|l| l.starts_with(&format!("> {c}")));
    if !sent(must) {
        panic!("{what}: curl did not send {must}\n{}", r.describe());
    }
    if let Some(no) = must_not {
        if sent(no) {
            panic!(
                "{what}: curl fell back from {must} to {no} (so {must} failed)\n{}",
                r.describe()
            );
        }
    }
}

/// Uploads `src` as `remote` with curl, checks the file under root, downloads it back
/// with curl and compares.
fn curl_roundtrip(srv: &Server, mode_args: &[&str], src: &Path, remote: &str, max_time_s: u64) {
    let what = format!(
        "curl {mode_args:?} upload of {} ({} bytes)",
        remote,
        std::fs::metadata(src).unwrap().len()
    );
    let r = run_curl(
        curl(max_time_s)
            .arg("-v")
            .args(mode_args)
            .arg("-T")
            .arg(src)
            .arg(srv.url(remote)),
        max_time_s,
    );
    r.assert_success(&what);
    check_trace(&r, mode_args, &what);
    assert_same_file(
        src,
        &srv.root().join(remote),
        &format!("{what}: file on disk under root"),
    );

    let out = srv
        .scratch()
        .join(format!("download-{}", remote.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    let r = run_curl(
        curl(max_time_s)
            .arg("-v")
            .args(mode_args)
            .arg("-o")
            .arg(&out)
            .arg(srv.url(remote)),
        max_time_s,
    );
    r.assert_success(&format!("{what}: download back"));
    check_trace(&r, mode_args, &format!("{what}: download back"));
    if !out.exists() && std::fs::metadata(src).unwrap().len() == 0 {
        // curl may not create the output file for an empty download.
        std::fs::write(&out, b"").unwrap();
    }
    assert_same_file(src, &out, &format!("{what}: downloaded copy"));
    std::fs::remove_file(&out).unwrap();
}

fn roundtrip_all_sizes(mode_args: &[&str], tag: &str) {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        for (i, size) in SIZES.into_iter().enumerate() {
            let name = format!("{tag}-{size}.bin");
            let src = make_test_file(&srv.scratch(), &name, size, 100 + i as u64);
            curl_roundtrip(&srv, mode_args, &src, &name, 120);
        }
    });
}

#[test]
fn curl_epsv_roundtrip() {
    roundtrip_all_sizes(&[], "epsv");
}

#[test]
fn curl_pasv_roundtrip() {
    roundtrip_all_sizes(&["--disable-epsv"], "pasv");
}

#[test]
fn curl_active_eprt_roundtrip() {
    roundtrip_all_sizes(&["-P", "127.0.0.1"], "eprt");
}

#[test]
fn curl_active_port_roundtrip() {
    roundtrip_all_sizes(&["-P", "127.0.0.1", "--disable-eprt"], "port");
}

fn big_file(dp: DataPath) {
    let srv = Server::start_dp(dp);
    let src = srv.scratch().join("big-256MiB.bin");
    write_test_file(&src, 256 * MIB, 0xb16 + dp as u64);
    curl_roundtrip(&srv, &[], &src, "big-256MiB.bin", 300);
}

#[test]
fn curl_256mib_fixed() {
    big_file(DataPath::Fixed);
}

#[test]
fn curl_256mib_splice() {
    big_file(DataPath::Splice);
}

#[test]
fn curl_list_and_nlst() {
    let srv = Server::start();
    let names = ["one.txt", "two.bin", "three with space.dat"];
    for (i, n) in names.iter().enumerate() {
        let src = make_test_file(&srv.scratch(), &format!("src{i}"), 100 * i as u64, i as u64);
        let url = srv.url(&n.replace(' ', "%20"));
        run_curl(curl(60).arg("-T").arg(&src).arg(url), 60).assert_success(&format!("upload {n}"));
        assert_same_file(&src, &srv.root().join(n), &format!("curl upload of {n:?}"));
    }
    std::fs::create_dir(srv.root().join("subdir")).unwrap();

    // LIST (URL ending in '/').
    let r = run_curl(curl(60).arg(srv.url("")), 60);
    r.assert_success("curl LIST of /");
    let list = r.stdout_str();
    for n in names.iter().chain(["subdir"].iter()) {
        assert!(
            list.lines().any(|l| l.ends_with(n)),
            "curl LIST output lacks {n:?}:\n{list}"
        );
    }
    // NLST (--list-only).
    let r = run_curl(curl(60).arg("--list-only").arg(srv.url("")), 60);
    r.assert_success("curl NLST of /");
    let mut got: Vec<String> = r
        .stdout_str()
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = names
        .iter()
        .map(|s| s.to_string())
        .chain(["subdir".to_string()])
        .collect();
    want.sort();
    assert_eq!(got, want, "curl --list-only (NLST) output");
}

#[test]
fn curl_ftp_create_dirs() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let src = make_test_file(&srv.scratch(), "nested.bin", 70_000, 77);
        let remote = "a/b/c/nested.bin";
        run_curl(
            curl(60)
                .arg("--ftp-create-dirs")
                .arg("-T")
                .arg(&src)
                .arg(srv.url(remote)),
            60,
        )
        .assert_success("curl --ftp-create-dirs upload");
        assert!(
            srv.root().join("a/b/c").is_dir(),
            "a/b/c not created on disk"
        );
        curl_roundtrip(&srv, &[], &src, remote, 60);
        // Other path methods: singlecwd ("CWD x-singlecwd" / "MKD x-singlecwd", one level)
        // and nocwd ("STOR a/b/c/file.bin" with the full path, into an existing dir).
        for (method, remote) in [
            ("singlecwd", "x-singlecwd/file.bin"),
            ("nocwd", "a/b/c/nocwd.bin"),
        ] {
            run_curl(
                curl(60)
                    .args(["--ftp-create-dirs", "--ftp-method", method])
                    .arg("-T")
                    .arg(&src)
                    .arg(srv.url(remote)),
                60,
            )
            .assert_success(&format!("curl --ftp-method {method} upload"));
            assert_same_file(
                &src,
                &srv.root().join(remote),
                &format!("--ftp-method {method}"),
            );
        }
    });
}

#[test]
fn curl_quote_mkd_and_dele() {
    let srv = Server::start();
    std::fs::write(srv.root().join("victim.txt"), b"bye").unwrap();
    let r = run_curl(
        curl(60)
            .args([
                "-Q",
                "MKD made-by-quote",
                "-Q",
                "DELE victim.txt",
                "--list-only",
            ])
            .arg(srv.url("")),
        60,
    );
    r.assert_success("curl -Q MKD/DELE");
    assert!(
        srv.root().join("made-by-quote").is_dir(),
        "MKD via curl -Q did not create the directory"
    );
    assert!(
        !srv.root().join("victim.txt").exists(),
        "DELE via curl -Q did not delete the file"
    );
}

#[test]
fn curl_error_exit_codes() {
    let srv = Server::start();
    let out = srv.scratch().join("nothing");
    let r = run_curl(
        curl(30)
            .arg("-o")
            .arg(&out)
            .arg(srv.url("does-not-exist.bin")),
        30,
    );
    assert_eq!(
        r.code(),
        Some(78),
        "curl download of a missing file: expected exit 78 (remote file not found = 550)\n{}",
        r.describe()
    );
    let bad = format!("ftp://{}:wrong-pass@127.0.0.1:{}/x", srv.user, srv.port);
    let r = run_curl(curl(30).arg("-o").arg(&out).arg(bad), 30);
    assert_eq!(
        r.code(),
        Some(67),
        "curl with a wrong password: expected exit 67 (login denied = 530)\n{}",
        r.describe()
    );
    // Server still fine afterwards.
    let src = make_test_file(&srv.scratch(), "ok.bin", 1234, 1);
    curl_roundtrip(&srv, &[], &src, "ok.bin", 60);
}
