//! FTPS (RFC 4217) with real clients: curl (explicit and implicit, EPSV and PASV), lftp (passive
//! and active),
//! Python's ftplib `FTP_TLS` (with and without session resumption on data connections), MODE B over
//! TLS, a cut protected upload, and bad input (garbage instead of a ClientHello, a stalled
//! handshake, commands out of order, a renegotiation attempt).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tls_server(extra: &[&str]) -> Server {
    Server::start_with(ServerOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..ServerOpts::default()
    })
}

/// The start-up line that begins with `prefix` (the lines are collected as the server prints them).
/// The self-signed certificate the server created beside its root (printed at start-up).
fn cert_of(srv: &Server) -> PathBuf {
    let line = startup_line(srv, "ringest: TLS certificate ");
    let quoted = line.split('"').nth(1).expect("quoted certificate path");
    PathBuf::from(quoted)
}

fn implicit_port(srv: &Server) -> u16 {
    let line = startup_line(srv, "ringest: implicit TLS on ");
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn ftps_py(srv: &Server, part: &str, extra: &[&str]) -> CmdOutput {
    require_tool("python3");
    let script = format!("{}/tests/py/ftps.py", env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new("python3");
    c.arg(script)
        .args(["127.0.0.1", &srv.port.to_string(), &srv.user, &srv.pass])
        .arg(cert_of(srv))
        .arg(srv.root())
        .arg(part)
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_cmd(&mut c, Duration::from_secs(90))
}

/// Active mode (EPRT/PORT) is left to lftp: curl 7.88 (Debian 12) sends an active-mode data
/// connection's bytes in clear despite `--ssl-reqd` (fixed in curl 8.1, "ftp: active mode with
/// SSL, add the filter"); ringest refuses them (425), as it must.
#[test]
fn curl_explicit_tls_uploads_and_downloads_over_epsv_and_pasv() {
    let srv = tls_server(&[]);
    let cert = cert_of(&srv);
    let local = make_test_file(&srv.scratch(), "c.bin", 3 * MIB + 7, 71);
    for (i, how) in [&[][..], &["--disable-epsv"][..]].iter().enumerate() {
        let name = format!("c{i}.bin");
        let mut c = curl(60);
        c.args(["--ssl-reqd", "--cacert"])
            .arg(&cert)
            .args(*how)
            .arg("-T")
            .arg(&local)
            .arg(srv.url(&name));
        run_cmd(&mut c, Duration::from_secs(90)).assert_success(&format!("curl upload {how:?}"));
        assert_same_file(&local, &srv.root().join(&name), "FTPS upload");
        let back = srv.scratch().join(format!("back{i}.bin"));
        let mut c = curl(60);
        c.args(["--ssl-reqd", "--cacert"])
            .arg(&cert)
            .args(*how)
            .arg("-o")
            .arg(&back)
            .arg(srv.url(&name));
        run_cmd(&mut c, Duration::from_secs(90)).assert_success(&format!("curl download {how:?}"));
        assert_same_file(&local, &back, "FTPS download");
    }
    // A listing over a protected data connection.
    let mut c = curl(30);
    c.args(["--ssl-reqd", "--cacert"])
        .arg(&cert)
        .arg(srv.url("/"));
    let out = run_cmd(&mut c, Duration::from_secs(60));
    out.assert_success("curl LIST");
    assert!(out.stdout_str().contains("c1.bin"), "{}", out.stdout_str());
}

#[test]
fn curl_implicit_tls_on_its_own_listener() {
    let srv = tls_server(&["--implicit-tls-listen", "127.0.0.1:0"]);
    let cert = cert_of(&srv);
    let port = implicit_port(&srv);
    let local = make_test_file(&srv.scratch(), "i.bin", MIB + 1, 72);
    let url = format!("ftps://{}:{}@127.0.0.1:{port}/i.bin", srv.user, srv.pass);
    let mut c = curl(60);
    c.arg("--cacert").arg(&cert).arg("-T").arg(&local).arg(&url);
    run_cmd(&mut c, Duration::from_secs(90)).assert_success("curl ftps:// upload");
    assert_same_file(&local, &srv.root().join("i.bin"), "implicit FTPS upload");
    let back = srv.scratch().join("i-back.bin");
    let mut c = curl(60);
    c.arg("--cacert").arg(&cert).arg("-o").arg(&back).arg(&url);
    run_cmd(&mut c, Duration::from_secs(90)).assert_success("curl ftps:// download");
    assert_same_file(&local, &back, "implicit FTPS download");
    // Plain FTP on the implicit port is not TLS: the server closes it instead of hanging.
    let mut c = curl(10);
    c.arg(format!("ftp://{}:{}@127.0.0.1:{port}/", srv.user, srv.pass));
    let out = run_cmd(&mut c, Duration::from_secs(30));
    assert!(!out.success() && !out.timed_out, "{}", out.describe());
}

#[test]
fn tls_required_refuses_a_clear_login_and_clear_data() {
    let srv = tls_server(&["--tls", "required", "--tls-data", "required"]);
    let cert = cert_of(&srv);
    let mut c = Ftp::connect(srv.addr);
    let r = c.cmd(&format!("USER {}", srv.user));
    assert_eq!(r.code, 530, "{}", c.transcript());
    assert!(r.text().contains("TLS"), "the reply says why: {}", r.text());
    // curl without --ssl-reqd does not try TLS: refused.
    let mut cc = curl(20);
    cc.arg(srv.url("/"));
    let out = run_cmd(&mut cc, Duration::from_secs(40));
    assert!(!out.success(), "{}", out.describe());
    // PROT C is refused when data must be protected (curl --ssl-control protects only control).
    let local = make_test_file(&srv.scratch(), "r.bin", 1000, 73);
    let mut cc = curl(20);
    cc.args(["--ssl-control", "--cacert"])
        .arg(&cert)
        .arg("-T")
        .arg(&local)
        .arg(srv.url("r.bin"));
    let out = run_cmd(&mut cc, Duration::from_secs(40));
    assert!(!out.success(), "{}", out.describe());
    assert!(!srv.root().join("r.bin").exists());
    // With TLS on both, the same upload works.
    let mut cc = curl(20);
    cc.args(["--ssl-reqd", "--cacert"])
        .arg(&cert)
        .arg("-T")
        .arg(&local)
        .arg(srv.url("r.bin"));
    run_cmd(&mut cc, Duration::from_secs(40)).assert_success("curl --ssl-reqd");
    assert_same_file(&local, &srv.root().join("r.bin"), "upload");
}

#[test]
fn lftp_with_forced_tls_puts_gets_and_lists_passive_and_active() {
    let srv = tls_server(&["--tls", "required", "--tls-data", "required"]);
    let cert = cert_of(&srv);
    let local = make_test_file(&srv.scratch(), "l.bin", 2 * MIB + 3, 74);
    for passive in ["yes", "no"] {
        let script = format!(
            "set ftp:ssl-allow yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:ca-file {}; \
             set ftp:passive-mode {passive}; put l.bin -o l-{passive}.bin; ls; \
             get l-{passive}.bin -o back-{passive}.bin; bye",
            cert.display()
        );
        let out = lftp_script(&srv, &script, 60);
        out.assert_success(&format!("lftp over TLS, passive {passive}"));
        let up = srv.root().join(format!("l-{passive}.bin"));
        assert_same_file(&local, &up, "lftp upload");
        let back = srv.scratch().join(format!("back-{passive}.bin"));
        assert_same_file(&local, &back, "lftp download");
        assert!(
            out.stdout_str().contains(&format!("l-{passive}.bin")),
            "{}",
            out.stdout_str()
        );
    }
}

#[test]
fn ftplib_resuming_subclass_uploads_downloads_and_lists() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "resume", &[]).assert_success("ftplib FTP_TLS with session reuse");
}

#[test]
fn a_data_connection_that_does_not_resume_is_refused_unless_allowed() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "no_resume", &[]).assert_success("plain FTP_TLS refused with 522");
    assert!(
        wait_until(
            || srv.stderr_tail(8192).contains("does not resume"),
            Duration::from_secs(5)
        ),
        "the refusal is logged: {}",
        srv.stderr_tail(2000)
    );
    let srv = tls_server(&["--tls-data-resumption", "false"]);
    ftps_py(&srv, "no_resume", &["accepted"]).assert_success("plain FTP_TLS accepted");
    assert_file_content(&srv.root().join("py-noresume.bin"), &[b'x'; 1000], "upload");
}

#[test]
fn a_cut_protected_upload_is_426_and_lands_nothing() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "truncate", &[]).assert_success("cut TLS upload");
    assert!(
        wait_until(
            || srv.stderr_tail(8192).contains("close_notify"),
            Duration::from_secs(5)
        ),
        "the truncation is logged: {}",
        srv.stderr_tail(2000)
    );
}

#[test]
fn mode_b_carries_several_files_over_one_protected_data_connection() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "modeb", &[]).assert_success("MODE B over TLS");
}

#[test]
fn garbage_instead_of_a_client_hello_closes_the_connection() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "garbage_hello", &[]).assert_success("garbage after AUTH TLS");
}

#[test]
fn a_stalled_handshake_is_cut_at_the_login_timeout() {
    let srv = tls_server(&["--login-timeout", "2"]);
    ftps_py(&srv, "stalled_handshake", &[]).assert_success("stalled handshake");
}

#[test]
fn tls_commands_out_of_order_get_clear_replies() {
    let srv = tls_server(&[]);
    ftps_py(&srv, "order", &[]).assert_success("PBSZ/PROT/AUTH/CCC order");
}

#[test]
fn a_renegotiation_attempt_does_not_hang_or_kill_the_server() {
    require_tool("openssl");
    let mut srv = tls_server(&[]);
    // `R` asks openssl s_client to renegotiate (TLS 1.2; TLS 1.3 has no renegotiation). rustls
    // refuses it; the session must end or go on, never hang, and the server must live on.
    let mut c = Command::new("timeout");
    c.args(["-k", "2", "20", "openssl", "s_client", "-tls1_2"])
        .args(["-starttls", "ftp", "-connect"])
        .arg(format!("127.0.0.1:{}", srv.port));
    let out = run_cmd_input(
        &mut c,
        Some(b"R\nNOOP\r\nQUIT\r\n"),
        Duration::from_secs(30),
    );
    assert_ne!(out.code(), Some(124), "s_client hung: {}", out.describe());
    let all = format!("{}{}", out.stdout_str(), out.stderr_str());
    assert!(
        all.contains("RENEGOTIATING"),
        "renegotiation was attempted: {all}"
    );
    assert!(all.contains("no renegotiation"), "and refused: {all}");
    srv.assert_alive();
    srv.assert_serves_new_session("after renegotiation");
}

#[test]
fn feat_lists_auth_tls_only_when_tls_is_on_and_the_certificate_is_announced() {
    let srv = tls_server(&[]);
    let mut c = srv.login();
    let feat = c.cmd("FEAT");
    for l in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(feat.text().contains(l), "{l} in {}", feat.text());
    }
    assert!(startup_line(&srv, "ringest: TLS certificate ").contains("self-signed, created now"));
    // A TLS-off server answers AUTH with 502 and lists nothing.
    let off = tls_server(&["--tls", "off"]);
    let mut c = Ftp::connect(off.addr);
    assert_eq!(c.cmd("AUTH TLS").code, 502);
    assert!(!c.cmd("FEAT").text().contains("AUTH TLS"));
}

/// A certificate made with openssl (as operators make them), marked as a leaf.
fn openssl_cert(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
    require_tool("openssl");
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let mut c = Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ])
    .args(["-days", "30", "-subj", &format!("/CN={name}")])
    .args(["-addext", "subjectAltName=IP:127.0.0.1"])
    .args(["-addext", "basicConstraints=critical,CA:FALSE"])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    run_cmd(&mut c, Duration::from_secs(30)).assert_success("openssl req");
    (cert, key)
}

/// A blocking FTPS control connection made with ringest's own TLS layer, trusting `roots` only.
struct TlsControl {
    s: std::net::TcpStream,
    tls: ringest::tls::TlsConn,
}

impl TlsControl {
    fn connect(addr: std::net::SocketAddr, roots: &std::path::Path) -> Result<TlsControl, String> {
        use ringest::tls::config::{client_config, Verify};
        use rustls::pki_types::pem::PemObject;
        use std::io::{BufRead, BufReader, Write};
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(roots)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let cfg = client_config(Verify::Roots(certs)).unwrap();
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        s.write_all(b"AUTH TLS\r\n").unwrap();
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        assert!(line.starts_with("234"), "{line}");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = ringest::tls::TlsConn::client(cfg, name).map_err(|e| e.to_string())?;
        let mut c = TlsControl { s, tls };
        while c.tls.is_handshaking() {
            c.flush()?;
            c.read_more()?;
        }
        c.flush()?;
        Ok(c)
    }

    fn flush(&mut self) -> Result<(), String> {
        use std::io::Write;
        let out = self.tls.take_outgoing(Vec::new());
        self.s.write_all(&out).map_err(|e| e.to_string())
    }

    fn read_more(&mut self) -> Result<(), String> {
        use std::io::Read;
        let mut buf = [0u8; 16384];
        let n = self.s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        self.tls
            .received_bytes(&buf[..n])
            .map_err(|e| e.to_string())
    }

    /// Sends one command and returns its (single-line) reply.
    fn cmd(&mut self, line: &str) -> Result<String, String> {
        self.tls
            .encrypt(format!("{line}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        self.flush()?;
        loop {
            let p = self.tls.plaintext();
            if let Some(end) = p.windows(2).position(|w| w == b"\r\n") {
                let reply = String::from_utf8_lossy(&p[..end]).into_owned();
                self.tls.consume(end + 2);
                return Ok(reply);
            }
            self.read_more()?;
        }
    }
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let base = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = openssl_cert(base.path(), "a");
    let (b_cert, b_key) = openssl_cert(base.path(), "b");
    let (cert, key) = (base.path().join("live.crt"), base.path().join("live.key"));
    std::fs::copy(&a_cert, &cert).unwrap();
    std::fs::copy(&a_key, &key).unwrap();
    let srv = tls_server(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut old = TlsControl::connect(srv.addr, &a_cert).expect("a session trusting A");
    assert!(old
        .cmd(&format!("USER {}", srv.user))
        .unwrap()
        .starts_with("331"));
    assert!(old
        .cmd(&format!("PASS {}", srv.pass))
        .unwrap()
        .starts_with("230"));
    assert!(
        TlsControl::connect(srv.addr, &b_cert).is_err(),
        "B is not in use yet"
    );

    // Replace the files and reload: new sessions get B, the logged-in session goes on.
    std::fs::copy(&b_cert, &cert).unwrap();
    std::fs::copy(&b_key, &key).unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(
            || srv.stderr_tail(8192).contains("TLS certificate reloaded"),
            Duration::from_secs(10)
        ),
        "{}",
        srv.stderr_tail(2000)
    );
    TlsControl::connect(srv.addr, &b_cert).expect("a new session gets B");
    assert!(
        TlsControl::connect(srv.addr, &a_cert).is_err(),
        "A is no longer served"
    );
    assert!(
        old.cmd("NOOP").unwrap().starts_with("200"),
        "the old session survived"
    );

    // A broken certificate on the next reload is refused; B stays in use.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(
            || srv
                .stderr_tail(8192)
                .contains("TLS certificate not reloaded"),
            Duration::from_secs(10)
        ),
        "{}",
        srv.stderr_tail(2000)
    );
    TlsControl::connect(srv.addr, &b_cert).expect("B is still served");
    assert!(old.cmd("NOOP").unwrap().starts_with("200"));
}

#[test]
fn check_config_validates_the_certificate_and_its_key() {
    let base = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = openssl_cert(base.path(), "a");
    let (_, b_key) = openssl_cert(base.path(), "b");
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let conf = |key: &std::path::Path| {
        let p = base.path().join("ringest.toml");
        std::fs::write(
            &p,
            format!(
                "root = \"{}\"\ntls = \"required\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                root.display(),
                a_cert.display(),
                key.display()
            ),
        )
        .unwrap();
        p
    };
    let ok = ringest_cmd(
        &["check-config", conf(&a_key).to_str().unwrap()],
        Duration::from_secs(30),
    );
    ok.assert_success("check-config with a matching key");
    assert!(ok.stdout_str().contains("SHA-256"), "{}", ok.describe());
    let bad = ringest_cmd(
        &["check-config", conf(&b_key).to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert!(
        !bad.success(),
        "a key of another certificate passed\n{}",
        bad.describe()
    );
    let all = format!("{}{}", bad.stdout_str(), bad.stderr_str());
    assert!(all.contains("tls_cert") && all.contains("match"), "{all}");
    // The server refuses to start with it, naming the problem.
    let out = ringest_cmd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--root",
            root.to_str().unwrap(),
            "--tls-cert",
            a_cert.to_str().unwrap(),
            "--tls-key",
            b_key.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr_str().contains("match"), "{}", out.describe());
}

#[test]
fn a_user_can_require_tls_for_their_own_login_and_data() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let home = base.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let hash = |pw: &str| {
        let r = ringest_cmd(&["passwd", "--password", pw], Duration::from_secs(60));
        r.assert_success("ringest passwd");
        r.stdout_str().trim().to_owned()
    };
    let users = base.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[[user]]\nname = \"strict\"\npassword = \"{}\"\nroot = \"{}\"\ntls = \"required\"\n\
             tls_data = \"required\"\n\n[[user]]\nname = \"loose\"\npassword = \"{}\"\nroot = \"{}\"\n",
            hash("pw1"),
            home.display(),
            hash("pw2"),
            home.display()
        ),
    )
    .unwrap();
    let srv = users_file_server(base.path(), &users, &["--root", root.to_str().unwrap()]);
    let cert = base.path().join("root.tls-cert.pem");
    // In clear, the strict user's correct password is refused with the reason.
    let mut c = Ftp::connect(srv.addr);
    c.cmd_expect("USER strict", 331);
    let r = c.cmd("PASS pw1");
    assert_eq!(r.code, 530, "{}", c.transcript());
    assert!(r.text().contains("requires TLS"), "{}", r.text());
    // The other user logs in in clear.
    let mut c = Ftp::connect(srv.addr);
    c.cmd_expect("USER loose", 331);
    c.cmd_expect("PASS pw2", 230);
    // Over TLS the strict user logs in, and must protect data connections.
    assert!(wait_until(|| cert.exists(), Duration::from_secs(5)));
    let mut t = TlsControl::connect(srv.addr, &cert).expect("TLS session");
    assert!(t.cmd("USER strict").unwrap().starts_with("331"));
    assert!(t.cmd("PASS pw1").unwrap().starts_with("230"));
    assert!(t.cmd("PBSZ 0").unwrap().starts_with("200"));
    assert!(t.cmd("PROT C").unwrap().starts_with("534"));
    assert!(t.cmd("EPSV").unwrap().starts_with("229"));
    assert!(t.cmd("STOR x.bin").unwrap().starts_with("521"));
    // The loose user may choose clear data over TLS.
    let mut t = TlsControl::connect(srv.addr, &cert).expect("TLS session");
    assert!(t.cmd("USER loose").unwrap().starts_with("331"));
    assert!(t.cmd("PASS pw2").unwrap().starts_with("230"));
    assert!(t.cmd("PBSZ 0").unwrap().starts_with("200"));
    assert!(t.cmd("PROT C").unwrap().starts_with("200"));
}
