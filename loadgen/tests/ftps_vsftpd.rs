//! FTPS against a real third-party server: vsftpd with `ssl_enable`, `force_local_*_ssl` and
//! `require_ssl_reuse` (it refuses a data connection that does not resume the control connection's
//! TLS session), started here as a child with a configuration of its own, on free loopback ports.
//!
//! Needs vsftpd (Debian package `vsftpd`) and root (a local user is created for the logins). Without
//! them these tests FAIL, saying what is missing: they never pass without having run.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const USER: &str = "lgftps";
const PASSWORD: &str = "lgftps-pw-7";

fn vsftpd_binary() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join("vsftpd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "vsftpd not found (looked in PATH and the sbin directories): these FTPS tests need \
                 it; install it with `apt-get install -y vsftpd`"
            )
        })
}

/// The test user (created once, with its password set every time).
fn ensure_user() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the vsftpd FTPS tests need root (they create the local user {USER})"
    );
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let st = Command::new("useradd")
            // vsftpd enters the home directory before local_root: it must exist.
            .args(["-M", "-d", "/", "-s", "/bin/sh", USER])
            .status()
            .expect("running useradd");
        assert!(st.success(), "useradd {USER} failed");
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("running chpasswd");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("chpasswd stdin");
        writeln!(stdin, "{USER}:{PASSWORD}").expect("writing to chpasswd");
    }
    assert!(child.wait().expect("chpasswd").success(), "chpasswd failed");
    std::fs::create_dir_all("/var/run/vsftpd/empty").expect("creating /var/run/vsftpd/empty");
    *done = true;
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A vsftpd child, killed (by its PID) when dropped.
struct Vsftpd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Vsftpd {
    fn start(implicit: bool) -> Vsftpd {
        let bin = vsftpd_binary();
        ensure_user();
        let dir = tempfile::tempdir().expect("tempdir");
        // The user's processes must reach `root` inside it (a temporary directory is 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        // ringest's self-signed certificate: for localhost, 127.0.0.1 and ::1.
        ringest::tls::cert::ensure_self_signed(&cert, &key, &[]).expect("self-signed certificate");
        let chown = Command::new("chown")
            .arg(USER)
            .arg(&root)
            .status()
            .expect("chown");
        assert!(chown.success());
        let port = free_port();
        // A passive range of its own per server (tests run in parallel).
        let pasv = 20000 + (port % 200) * 100;
        let conf = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=022\n\
             local_root={root}\n\
             ssl_enable=YES\nallow_anon_ssl=NO\nforce_local_logins_ssl=YES\n\
             force_local_data_ssl=YES\nrequire_ssl_reuse=YES\nimplicit_ssl={implicit}\n\
             rsa_cert_file={cert}\nrsa_private_key_file={key}\n\
             pasv_enable=YES\npasv_address=127.0.0.1\npasv_min_port={pasv}\npasv_max_port={}\n\
             seccomp_sandbox=NO\nbackground=NO\nmax_clients=200\nmax_per_ip=200\n\
             secure_chroot_dir=/var/run/vsftpd/empty\npam_service_name=vsftpd\n\
             xferlog_enable=NO\n",
            pasv + 99,
            root = root.display(),
            cert = cert.display(),
            key = key.display(),
            implicit = if implicit { "YES" } else { "NO" },
        );
        let conf_path = dir.path().join("vsftpd.conf");
        std::fs::write(&conf_path, conf).expect("writing vsftpd.conf");
        let child = Command::new(&bin)
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting vsftpd");
        let mut server = Vsftpd { child, port, dir };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!(
                    "vsftpd exited at once ({st}); config in {:?}",
                    server.dir.path()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "vsftpd did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn stored(&self, prefix: &str) -> usize {
        std::fs::read_dir(self.dir.path().join("root").join(prefix))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Vsftpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs loadgen with `--json`; returns its exit code, report and all of its output.
fn loadgen(server: &Vsftpd, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--port", &server.port.to_string(), "--user", USER])
        .args(["--password", PASSWORD, "--json", "--op-timeout", "10"])
        .args(args)
        .output()
        .expect("running loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, all)
}

/// Every file stored and downloaded again, and every data connection resumed its session.
fn check_all_resumed(server: &Vsftpd, scenario: &str, tls: &[&str], files: u64, sessions: u64) {
    let prefix = format!("{scenario}-{}", tls.join("").replace(['-', '/', '.'], ""));
    let (n, s) = (files.to_string(), sessions.to_string());
    let mut args = vec![
        scenario,
        "--files",
        &n,
        "--sessions",
        &s,
        "--size",
        "0..40K",
    ];
    args.extend_from_slice(&["--prefix", &prefix, "--verify"]);
    args.extend_from_slice(tls);
    let (code, r, out) = loadgen(server, &args);
    assert_eq!(code, 0, "loadgen {scenario} {tls:?} failed\n{out}");
    assert_eq!(r["files_ok"], files, "{out}");
    assert_eq!(r["verify"]["verified"], files, "{out}");
    assert_eq!(server.stored(&prefix), files as usize, "{out}");
    let data = r["tls_data_handshakes"].as_u64().unwrap_or(0);
    assert_eq!(data, files, "one TLS data connection per file\n{out}");
    assert_eq!(
        r["tls_data_resumed"], data,
        "every data handshake resumed\n{out}"
    );
    assert_eq!(r["tls_handshake_failures"], 0, "{out}");
    let control = if scenario == "stream-reconnect" {
        files
    } else {
        sessions
    };
    assert_eq!(r["tls_control_handshakes"], control, "{out}");
    assert!(
        r["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1_")),
        "{out}"
    );
}

#[test]
fn explicit_stream_with_ca() {
    let server = Vsftpd::start(false);
    let cert = server.cert();
    let ca = cert.to_str().expect("utf-8 path");
    check_all_resumed(&server, "stream", &["--tls", "--ca", ca], 60, 4);
}

#[test]
fn explicit_stream_reconnect_insecure() {
    let server = Vsftpd::start(false);
    check_all_resumed(&server, "stream-reconnect", &["--tls", "--insecure"], 12, 3);
}

#[test]
fn implicit_stream_epsv() {
    let server = Vsftpd::start(true);
    check_all_resumed(
        &server,
        "stream",
        &["--tls-implicit", "--insecure", "--epsv"],
        30,
        3,
    );
}

#[test]
fn block_mode_is_refused_clearly() {
    let server = Vsftpd::start(false);
    let (code, r, out) = loadgen(&server, &["block", "--files", "4", "--tls", "--insecure"]);
    assert_eq!(code, 2, "{out}");
    let fatal = r["fatal"].as_str().unwrap_or_default();
    assert!(fatal.contains("MODE B"), "{out}");
}

#[test]
fn an_unknown_certificate_is_refused() {
    let server = Vsftpd::start(false);
    let other = tempfile::tempdir().expect("tempdir");
    let (c, k) = (other.path().join("c.pem"), other.path().join("k.pem"));
    ringest::tls::cert::ensure_self_signed(&c, &k, &[]).expect("certificate");
    let ca = c.to_str().expect("utf-8 path");
    let (code, r, out) = loadgen(&server, &["stream", "--files", "2", "--tls", "--ca", ca]);
    assert_eq!(code, 2, "{out}");
    let fatal = r["fatal"].as_str().unwrap_or_default();
    assert!(fatal.contains("certificate"), "{out}");
    assert!(Path::new(&c).exists());
}
