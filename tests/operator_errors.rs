//! Operator errors that explain themselves (issue 10, item 5): `check-config` checks that every
//! user's root exists and is a writable directory and validates a users file as one, a root that
//! is a file says so, and `ringest passwd` prompts without echo on a terminal and reads stdin
//! otherwise. (The start-up warning about an unwritable root needs a user switch: tests/service.rs.)

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn hash(pw: &str) -> String {
    let r = ringest_cmd(&["passwd", "--password", pw], T);
    r.assert_success("ringest passwd --password");
    r.stdout_str().trim().to_owned()
}

fn user_entry(name: &str, root: &Path) -> String {
    format!(
        "[[user]]\nname = \"{name}\"\npassword = \"{}\"\nroot = \"{}\"\n\n",
        hash("pw"),
        root.display()
    )
}

fn check(file: &Path) -> CmdOutput {
    ringest_cmd(&["check-config", file.to_str().unwrap()], T)
}

#[test]
fn check_config_checks_every_users_root() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    fs::create_dir(&good).unwrap();
    let missing = d.path().join("missing");
    let file_root = d.path().join("a-file");
    fs::write(&file_root, b"not a directory").unwrap();
    let users = d.path().join("users.toml");
    fs::write(
        &users,
        format!(
            "{}{}{}",
            user_entry("alice", &good),
            user_entry("bob", &missing),
            user_entry("carol", &file_root)
        ),
    )
    .unwrap();
    let cfg = d.path().join("ringest.toml");
    fs::write(&cfg, format!("users_file = \"{}\"\n", users.display())).unwrap();

    for file in [&cfg, &users] {
        let r = check(file);
        assert!(
            !r.success(),
            "check-config passed with bad roots\n{}",
            r.describe()
        );
        let err = r.stderr_str();
        assert!(
            err.contains(&format!("root {} does not exist", missing.display())),
            "{}",
            r.describe()
        );
        assert!(
            err.contains(&format!(
                "root {} is a file, not a directory",
                file_root.display()
            )),
            "{}",
            r.describe()
        );
        assert!(
            !err.contains(&good.display().to_string()),
            "{}",
            r.describe()
        );
    }
    fs::create_dir(&missing).unwrap();
    fs::remove_file(&file_root).unwrap();
    fs::create_dir(&file_root).unwrap();
    let r = check(&cfg);
    r.assert_success("check-config with every root in place");
    assert!(r.stdout_str().contains("3 users"), "{}", r.describe());
}

#[test]
fn check_config_validates_a_users_file_as_one() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("r");
    fs::create_dir(&root).unwrap();
    let users = d.path().join("users.toml");
    fs::write(
        &users,
        format!(
            "{}[anonymous]\nenabled = true\nroot = \"{}\"\nincoming = \"/in\"\n",
            user_entry("alice", &root),
            root.display()
        ),
    )
    .unwrap();
    let r = check(&users);
    r.assert_success("check-config on a users file");
    assert_eq!(
        r.stdout_str().trim(),
        format!("{}: ok (users file: 1 users, anonymous)", users.display()),
        "{}",
        r.describe()
    );
    // A users file with a bad hash is reported as a users file problem, not as unknown keys.
    fs::write(
        &users,
        format!(
            "[[user]]\nname = \"alice\"\npassword = \"plain\"\nroot = \"{}\"\n",
            root.display()
        ),
    )
    .unwrap();
    let r = check(&users);
    assert!(!r.success(), "{}", r.describe());
    let err = r.stderr_str();
    assert!(
        err.contains("user \"alice\": key \"password\"") && !err.contains("unknown field"),
        "{}",
        r.describe()
    );
}

#[test]
fn check_config_judges_roots_for_run_as_user() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();
    // Owned by whoever runs the test and 0755: not writable by nobody (unless we are nobody).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = d.path().join("c.toml");
    fs::write(
        &cfg,
        format!("root = \"{}\"\nrun_as_user = \"nobody\"\n", root.display()),
    )
    .unwrap();
    let r = check(&cfg);
    assert!(!r.success(), "{}", r.describe());
    assert!(
        r.stderr_str().contains(&format!(
            "root {} is not writable by user nobody",
            root.display()
        )),
        "{}",
        r.describe()
    );
    fs::write(
        &cfg,
        format!(
            "root = \"{}\"\nrun_as_user = \"no-such-user-x\"\n",
            root.display()
        ),
    )
    .unwrap();
    let r = check(&cfg);
    assert!(
        !r.success() && r.stderr_str().contains("no such user"),
        "{}",
        r.describe()
    );
}

#[test]
fn serve_with_a_root_that_is_a_file_says_so() {
    let d = tempfile::tempdir().unwrap();
    let file: PathBuf = d.path().join("data");
    fs::write(&file, b"x").unwrap();
    let r = ringest_cmd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            file.to_str().unwrap(),
            "--password",
            "p",
        ],
        T,
    );
    assert!(!r.success(), "{}", r.describe());
    assert!(
        r.stderr_str().contains(&format!(
            "root {} is a file, not a directory",
            file.display()
        )),
        "{}",
        r.describe()
    );
}

#[test]
fn passwd_prompts_without_echo_on_a_terminal() {
    require_tool("python3");
    let script = format!("{}/tests/py/pty_passwd.py", env!("CARGO_MANIFEST_DIR"));
    let r = run_cmd(
        Command::new("python3")
            .arg(&script)
            .arg(server_bin())
            .args(["hunter2-on-tty", "hunter2-on-tty"]),
        T,
    );
    r.assert_success("ringest passwd on a terminal");
    let shown = r.stdout_str();
    assert!(
        shown.contains("Password: ") && shown.contains("Retype password: "),
        "{shown:?}"
    );
    assert!(
        !shown.contains("hunter2"),
        "the password was echoed: {shown:?}"
    );
    assert!(shown.contains("$argon2id$"), "no hash printed: {shown:?}");
    // Two different entries are refused.
    let r = run_cmd(
        Command::new("python3")
            .arg(&script)
            .arg(server_bin())
            .args(["one-password", "another-one"]),
        T,
    );
    assert!(!r.success(), "{}", r.describe());
    assert!(r.stdout_str().contains("do not match"), "{}", r.describe());
}

#[test]
fn passwd_reads_stdin_when_it_is_not_a_terminal() {
    let r = run_cmd_input(
        Command::new(server_bin()).arg("passwd"),
        Some(b"from-a-pipe\n"),
        T,
    );
    r.assert_success("echo pw | ringest passwd");
    let out = r.stdout_str();
    assert!(out.trim().starts_with("$argon2id$"), "{out:?}");
    assert_eq!(out.lines().count(), 1, "only the hash on stdout: {out:?}");
    assert!(
        !r.stderr_str().contains("Password"),
        "no prompt without a terminal: {}",
        r.describe()
    );
    // The hash verifies the password it was made from.
    let d = tempfile::tempdir().unwrap();
    let users = d.path().join("u.toml");
    fs::write(
        &users,
        format!(
            "[[user]]\nname = \"alice\"\npassword = \"{}\"\nroot = \"{}\"\n",
            out.trim(),
            d.path().display()
        ),
    )
    .unwrap();
    let stderr = d.path().join("stderr.log");
    let srv = ServerProc::start(
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--users-file".into(),
            users.display().to_string(),
        ],
        &[],
        &stderr,
    );
    let mut c = srv.login("alice", "from-a-pipe");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn version_flag() {
    let r = ringest_cmd(&["--version"], T);
    r.assert_success("ringest --version");
    assert_eq!(
        r.stdout_str().trim(),
        format!("ringest {}", env!("CARGO_PKG_VERSION"))
    );
}
