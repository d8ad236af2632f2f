//! Wildcards in NLST and LIST with the clients that need them (issue 10, item 1): tnftp `mget *.bin`
//! and `mget sub`, ncftp's `mget *.bin`, `ncftpget` with a wildcard, and ftplib for the exact
//! listings (tests/py/client_habits.py). Interactive clients are driven from a script on stdin with a
//! timeout, so a hang fails the test.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// g0..g2.bin (1000 bytes), note.txt, .hidden.bin, x[1].bin, sub/s0.bin and sub/s1.bin (500 bytes),
/// and an empty sub/deeper/.
fn populate(root: &Path) {
    for i in 0..3u64 {
        make_test_file(root, &format!("g{i}.bin"), 1000, 10 + i);
    }
    fs::write(root.join("note.txt"), b"not a bin\n").unwrap();
    fs::write(root.join(".hidden.bin"), b"hidden").unwrap();
    fs::write(root.join("x[1].bin"), b"brackets").unwrap();
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for i in 0..2u64 {
        make_test_file(&root.join("sub"), &format!("s{i}.bin"), 500, 20 + i);
    }
}

fn local_dir(srv: &Server, name: &str) -> std::path::PathBuf {
    let d = srv.scratch().join(name);
    fs::create_dir_all(&d).unwrap();
    d
}

fn ftplib_check(srv: &Server, check: &str) {
    let r = client_habits(srv, check, CLIENT_TIMEOUT);
    r.assert_success(&format!("ftplib client_habits.py {check}"));
}

#[test]
fn tnftp_mget_wildcard_and_directory() {
    require_tool("tnftp");
    let srv = Server::start();
    populate(srv.root());
    // A directory among the names would be a (correct) 550 on RETR; keep the transcript clean.
    fs::remove_dir(srv.root().join("sub/deeper")).unwrap();
    let local = local_dir(&srv, "tnftp");
    // `mget sub` stores the names NLST returns (sub/s0.bin): the local directory must exist, as
    // with any server.
    fs::create_dir_all(local.join("sub")).unwrap();
    let script = format!(
        "user {} {}\nbinary\nprompt off\nmget *.bin\nmget sub\nbye\n",
        srv.user, srv.pass
    );
    let r = run_cmd_input(
        Command::new("tnftp")
            .args(["-n", "-v", "127.0.0.1", &srv.port.to_string()])
            .current_dir(&local),
        Some(script.as_bytes()),
        CLIENT_TIMEOUT,
    );
    r.assert_success("tnftp mget");
    for name in ["g0.bin", "g1.bin", "g2.bin", "x[1].bin"] {
        assert_same_file(
            &srv.root().join(name),
            &local.join(name),
            &format!("tnftp mget *.bin: {name}\n{}", r.describe()),
        );
    }
    assert!(
        !local.join("note.txt").exists() && !local.join(".hidden.bin").exists(),
        "mget *.bin fetched more than *.bin: {:?}",
        dir_names(&local)
    );
    for name in ["s0.bin", "s1.bin"] {
        assert_same_file(
            &srv.root().join("sub").join(name),
            &local.join("sub").join(name),
            &format!("tnftp mget sub: sub/{name}\n{}", r.describe()),
        );
    }
    let out = r.stdout_str();
    assert!(
        !out.contains("550") && !out.contains("Skipping"),
        "tnftp reported a problem:\n{}",
        r.describe()
    );
}

#[test]
fn ncftp_mget_and_ncftpget_wildcards() {
    require_tool("ncftp");
    require_tool("ncftpget");
    let srv = Server::start();
    populate(srv.root());
    // ncftp keeps preferences and history under $HOME/.ncftp.
    let home = local_dir(&srv, "home");
    let port = srv.port.to_string();

    let local = local_dir(&srv, "ncftp");
    let r = run_cmd_input(
        Command::new("ncftp")
            .args(["-u", &srv.user, "-p", &srv.pass, "-P", &port, "127.0.0.1"])
            .current_dir(&local)
            .env("HOME", &home),
        Some(b"binary\nmget *.bin\nbye\n"),
        CLIENT_TIMEOUT,
    );
    r.assert_success("ncftp mget *.bin");
    for name in ["g0.bin", "g1.bin", "g2.bin"] {
        assert_same_file(
            &srv.root().join(name),
            &local.join(name),
            &format!("ncftp mget *.bin: {name}\n{}", r.describe()),
        );
    }
    assert!(!local.join("note.txt").exists(), "{:?}", dir_names(&local));

    for (pattern, dir, want) in [
        ("/sub/*.bin", "sub", &["s0.bin", "s1.bin"][..]),
        ("g[12].bin", "", &["g1.bin", "g2.bin"][..]),
    ] {
        let local = local_dir(&srv, &format!("ncftpget-{}", want[0]));
        let r = run_cmd(
            Command::new("ncftpget")
                .args(["-u", &srv.user, "-p", &srv.pass, "-P", &port, "127.0.0.1"])
                .arg(&local)
                .arg(pattern)
                .env("HOME", &home),
            CLIENT_TIMEOUT,
        );
        r.assert_success(&format!("ncftpget {pattern}"));
        let mut got = dir_names(&local);
        got.sort();
        assert_eq!(got, want, "ncftpget {pattern}\n{}", r.describe());
        for name in want {
            assert_same_file(
                &srv.root().join(dir).join(name),
                &local.join(name),
                &format!("ncftpget {pattern}: {name}"),
            );
        }
    }
}

#[test]
fn ftplib_wildcard_listings() {
    let srv = Server::start();
    populate(srv.root());
    ftplib_check(&srv, "wildcards");
}

#[test]
fn listings_stop_at_max_list_entries() {
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--max-list-entries".into(), "2".into()],
        ..ServerOpts::default()
    });
    populate(srv.root());
    ftplib_check(&srv, "limit");
}
