//! Real-client tests with Python 3's ftplib (scripts in tests/py/).

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn python(srv: &Server, name: &str) -> Command {
    require_tool("python3");
    let mut c = Command::new("python3");
    c.arg(script(name))
        .arg("127.0.0.1")
        .arg(srv.port.to_string())
        .arg(&srv.user)
        .arg(&srv.pass)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

fn roundtrip(mode: &str) {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let local = srv.scratch().join("local");
        let out = srv.scratch().join("out");
        std::fs::create_dir_all(&local).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let mut names = Vec::new();
        for (i, size) in [0u64, 1, MIB + 1].into_iter().enumerate() {
            let name = format!("py-{mode}-{size}.bin");
            make_test_file(&local, &name, size, 300 + i as u64);
            names.push(name);
        }
        let r = run_cmd(
            python(&srv, "roundtrip.py")
                .arg(mode)
                .arg(&local)
                .arg(&out)
                .args(&names),
            Duration::from_secs(120),
        );
        r.assert_success(&format!("ftplib roundtrip ({mode})"));
        for name in &names {
            assert_same_file(
                &local.join(name),
                &srv.root().join(name),
                &format!("ftplib STOR {name} ({mode}): on disk"),
            );
            assert_same_file(
                &local.join(name),
                &out.join(name),
                &format!("ftplib RETR {name} ({mode}): downloaded"),
            );
        }
    });
}

#[test]
fn ftplib_roundtrip_pasv() {
    roundtrip("pasv");
}

#[test]
fn ftplib_roundtrip_epsv() {
    roundtrip("epsv");
}

#[test]
fn ftplib_roundtrip_active() {
    roundtrip("active");
}

#[test]
fn ftplib_directory_ops_and_errors() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let r = run_cmd(&mut python(&srv, "ops.py"), Duration::from_secs(120));
        r.assert_success("ftplib ops.py");
        assert!(
            srv.root().join("pydir").is_dir(),
            "mkd('pydir') did not create a directory on disk"
        );
        assert!(
            !srv.root().join("pydir/inner.bin").exists(),
            "delete('pydir/inner.bin') did not delete"
        );
        assert_eq!(
            std::fs::metadata(srv.root().join("active.bin"))
                .map(|m| m.len())
                .ok(),
            Some(4321),
            "active.bin on disk"
        );
    });
}

#[test]
fn ftplib_concurrent_sessions() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let root = srv.root().to_path_buf();
        let r = run_cmd(
            python(&srv, "concurrent.py").arg(&root).arg("50").arg("5"),
            Duration::from_secs(300),
        );
        r.assert_success("ftplib concurrent.py (50 sessions x 5 files)");
        assert_eq!(dir_names(&root).len(), 250, "number of files under root");
    });
}
