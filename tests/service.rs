//! Running as a service (issue 10, item 7): the systemd unit in deploy/ passes
//! `systemd-analyze verify`, readiness reaches `NOTIFY_SOCKET` once the listeners are bound, and
//! `run_as_user` switches the server from root to that user after binding, so uploaded files belong
//! to it; a root that user cannot write is warned about at start (item 5).
//!
//! The user-switch tests start the server as root (as CI runs) and switch to `nobody`.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn require_root(what: &str) {
    // SAFETY: geteuid has no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} starts the server as root and switches to nobody; run the tests as root \
         (CI does)"
    );
}

/// uid and gid of `name` from `id`.
fn ids_of(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let r = run_cmd(
            Command::new("id").args([flag, name]),
            Duration::from_secs(10),
        );
        r.assert_success(&format!("id {flag} {name}"));
        r.stdout_str().trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    if which("systemd-analyze").is_none() {
        panic!(
            "systemd-analyze not found; install it to check deploy/ringest.service \
             (apt-get install -y systemd; .ci/run does this)"
        );
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ringest.service");
    let text = fs::read_to_string(&unit).unwrap();
    assert!(text.contains("\nType=notify\n"), "Type=notify");
    assert!(text.contains("\nLimitNOFILE="), "LimitNOFILE");
    assert!(text.contains("\nNoNewPrivileges=yes\n"), "NoNewPrivileges");
    assert!(text.contains("\nProtectSystem=strict\n"), "ProtectSystem");
    // verify also checks that ExecStart's binary exists: point it at the one under test.
    assert!(text.contains("ExecStart=/usr/local/bin/ringest serve"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ringest.service");
    fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/ringest",
            &server_bin().display().to_string(),
        ),
    )
    .unwrap();
    let r = run_cmd(
        Command::new("systemd-analyze").arg("verify").arg(&copy),
        Duration::from_secs(60),
    );
    r.assert_success("systemd-analyze verify deploy/ringest.service");
    // verify only warns about unknown keys and bad values: any message is a failure.
    let noise: Vec<String> = r
        .stderr_str()
        .lines()
        .chain(r.stdout_str().lines())
        .filter(|l| l.contains("ringest"))
        .map(str::to_owned)
        .collect();
    assert!(noise.is_empty(), "systemd-analyze verify: {noise:#?}");
    // And the sample configuration it points at is valid.
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ringest.toml");
    let parsed = ringest::server::config::FileConfig::parse(&fs::read_to_string(cfg).unwrap())
        .unwrap_or_else(|e| panic!("deploy/ringest.toml: {e}"));
    assert_eq!(parsed.run_as_user.as_deref(), Some("ringest"));
}

#[test]
fn readiness_is_notified_once_listening() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let root = dir.path().join("root");
    let srv = ServerProc::start(
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--root".into(),
            root.display().to_string(),
            "--password".into(),
            "p".into(),
        ],
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
        &dir.path().join("stderr.log"),
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no readiness message");
    let msg = String::from_utf8_lossy(&buf[..n]);
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // Ready means accepting.
    let mut c = srv.login("ringest", "p");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn run_as_user_owns_uploads() {
    require_root("run_as_user_owns_uploads");
    let (uid, gid) = ids_of("nobody");
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--run-as-user".into(), "nobody".into()],
        ..ServerOpts::default()
    });
    // The root was opened as root; nobody needs to write into it (the directories above it are
    // root's 0700 temporary directories, which no longer matter).
    std::os::unix::fs::chown(srv.root(), Some(uid), Some(gid)).unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let data = test_bytes(200_000, 9);
    c.stor("owned.bin", &data, DataMode::Pasv);
    c.cmd_expect("MKD sub", 257);
    c.stor("sub/inner.bin", b"inner", DataMode::Epsv);
    c.cmd_expect("QUIT", 221);
    for name in ["owned.bin", "sub", "sub/inner.bin"] {
        let m = fs::metadata(srv.root().join(name)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner of {name}");
    }
    assert_file_content(&srv.root().join("owned.bin"), &data, "upload as nobody");
    // Every id of the process, and its supplementary groups, are nobody's now.
    let status = fs::read_to_string(format!("/proc/{}/status", srv.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), vec![uid.to_string(); 4], "{status}");
    assert_eq!(field("Gid:"), vec![gid.to_string(); 4], "{status}");
    assert_eq!(field("Groups:"), vec![gid.to_string()], "{status}");
    // No capability is left, except CAP_IPC_LOCK where RLIMIT_MEMLOCK could not be lifted (a
    // container without CAP_SYS_RESOURCE): the registered buffers need one or the other.
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        let caps = u64::from_str_radix(&field(set).concat(), 16).unwrap();
        assert_eq!(caps & !(1 << 14), 0, "{set} {caps:x}\n{status}");
    }
}

#[test]
fn root_not_writable_by_run_as_user_is_warned_at_start() {
    require_root("root_not_writable_by_run_as_user_is_warned_at_start");
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--run-as-user".into(), "nobody".into()],
        ..ServerOpts::default()
    });
    // The root stays root's (0700): nobody cannot write it.
    let warned = wait_until(
        || {
            srv.stderr_tail(8192)
                .contains("is not writable by this process")
        },
        Duration::from_secs(10),
    );
    assert!(warned, "no warning at start:\n{}", srv.stderr_tail(8192));
    let tail = srv.stderr_tail(8192);
    assert!(
        tail.contains(&format!("root {} is not writable", srv.root().display())),
        "{tail}"
    );
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let a = c.try_stor("denied.bin", b"x", DataMode::Pasv);
    assert_eq!(
        a.final_code(),
        550,
        "upload into an unwritable root: {:?}",
        a.replies
    );
}

#[test]
fn run_as_an_unknown_user_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let r = ringest_cmd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            dir.path().to_str().unwrap(),
            "--password",
            "p",
            "--run-as-user",
            "no-such-user-ringest",
        ],
        Duration::from_secs(30),
    );
    assert!(!r.success(), "{}", r.describe());
    assert!(
        r.stderr_str()
            .contains("run_as_user \"no-such-user-ringest\": no such user"),
        "{}",
        r.describe()
    );
}
