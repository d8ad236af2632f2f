//! Connections through a layer-4 balancer (PROXY protocol v1 and v2): the client a header names is
//! the client for logins, limits, the data connection's peer check and the xferlog; headers are
//! accepted only from `proxy_from`; a balancer that sends no header in time is cut. With crafted
//! headers from chosen loopback source addresses, and through a real HAProxy (`send-proxy-v2`).

mod common;

use common::*;
use ringest::proto::proxy::encode_v2;
use socket2::{Domain, Socket, Type};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (any port).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&sa(&format!("{from}:0")).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    s.into()
}

fn v2(client: &str, via: &str) -> Vec<u8> {
    let mut h = Vec::new();
    encode_v2(Some((sa(client), sa(via))), &[(0x04, b"tlv")], &mut h);
    h
}

fn proxy_server(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let log = dir.join("xferlog");
    let mut args: Vec<String> = [
        "--xferlog",
        log.to_str().unwrap(),
        "--tls",
        "off",
        "--data-timeout",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let srv = Server::start_with(ServerOpts {
        extra_args: args,
        ..ServerOpts::default()
    });
    (srv, log)
}

fn xferlog_has(log: &Path, needle: &str) -> bool {
    wait_until(
        || {
            std::fs::read_to_string(log)
                .map(|t| t.contains(needle))
                .unwrap_or(false)
        },
        Duration::from_secs(10),
    )
}

/// Logs in over a stream that already carried its header; returns the session.
fn session_over(stream: TcpStream, srv: &Server) -> Ftp {
    let mut c = Ftp::from_stream(stream, srv.addr);
    c.set_timeout(Duration::from_secs(10));
    let r = c.read_reply();
    assert_eq!(r.code, 220, "{}", c.transcript());
    c.cmd_expect(&format!("USER {}", srv.user), 331);
    c.cmd_expect(&format!("PASS {}", srv.pass), 230);
    c.cmd_expect("TYPE I", 200);
    c
}

fn epsv_port(c: &mut Ftp) -> u16 {
    let r = c.cmd_expect("EPSV", 229);
    let t = r.text();
    let inner = t.split("|||").nth(1).unwrap();
    inner
        .trim_end_matches(|ch: char| !ch.is_ascii_digit())
        .parse()
        .unwrap()
}

#[test]
fn the_client_named_by_the_header_is_the_client_for_data_checks_and_the_xferlog() {
    let (srv, log) = proxy_server(&["--proxy-protocol", "optional", "--proxy-from", "127.0.0.1"]);
    let mut ctl = connect_from("127.0.0.1", srv.addr);
    ctl.write_all(&v2("10.9.8.7:5555", "192.0.2.10:21"))
        .unwrap();
    let mut c = session_over(ctl, &srv);
    // PASV advertises the address the client reached (the balancer's), from the header.
    let pasv = c.cmd_expect("PASV", 227);
    assert!(pasv.text().contains("192,0,2,10"), "{}", pasv.text());
    let port = epsv_port(&mut c);
    let data_addr = SocketAddr::new(srv.addr.ip(), port);
    c.send("STOR via-proxy.bin");
    // A data connection naming another client is refused; the right one is then accepted.
    let mut thief = connect_from("127.0.0.1", data_addr);
    thief
        .write_all(&v2("10.9.8.8:6000", "192.0.2.10:4000"))
        .unwrap();
    thief.write_all(b"stolen").unwrap();
    let mut data = connect_from("127.0.0.1", data_addr);
    let mut first = v2("10.9.8.7:6001", "192.0.2.10:4000");
    // The header and the first payload bytes in one segment: the payload must stay for the upload.
    first.extend_from_slice(b"hello through the balancer");
    data.write_all(&first).unwrap();
    drop(data);
    let r = c.read_reply();
    assert_eq!(r.code, 150, "{}", c.transcript());
    let r = c.read_reply();
    assert_eq!(r.code, 226, "{}", c.transcript());
    drop(thief);
    assert_file_content(
        &srv.root().join("via-proxy.bin"),
        b"hello through the balancer",
        "upload through a PROXY header",
    );
    assert!(
        xferlog_has(&log, "10.9.8.7"),
        "xferlog: {:?}",
        std::fs::read_to_string(&log)
    );
    assert!(
        srv.stderr_tail(8192).contains("10.9.8.8"),
        "the refused data connection is logged: {}",
        srv.stderr_tail(2000)
    );
}

#[test]
fn a_header_from_outside_proxy_from_is_refused_and_logged() {
    let (srv, _) = proxy_server(&["--proxy-protocol", "optional", "--proxy-from", "127.0.0.1"]);
    let mut s = connect_from("127.0.0.2", srv.addr);
    s.write_all(&v2("10.0.0.1:1", "10.0.0.2:21")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no greeting for a forged header: {:?}", &buf[..n]);
    assert!(
        wait_until(
            || srv.stderr_tail(8192).contains("not in proxy_from"),
            Duration::from_secs(5)
        ),
        "{}",
        srv.stderr_tail(2000)
    );
    // A client there that does not claim anything is served (optional).
    let s = connect_from("127.0.0.2", srv.addr);
    let mut c = session_over(s, &srv);
    c.cmd_expect("NOOP", 200);
}

#[test]
fn required_mode_refuses_direct_connections_and_cuts_a_balancer_that_stays_silent() {
    let (srv, _) = proxy_server(&[
        "--proxy-protocol",
        "required",
        "--proxy-from",
        "127.0.0.1",
        "--proxy-timeout",
        "1",
    ]);
    let closed_without_a_word = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        std::io::Read::read(&mut s, &mut buf).unwrap_or(0) == 0
    };
    // From outside proxy_from: refused.
    assert!(closed_without_a_word(connect_from("127.0.0.3", srv.addr)));
    // From the balancer without a header: refused once it speaks.
    let mut s = connect_from("127.0.0.1", srv.addr);
    s.write_all(b"USER x\r\n").unwrap();
    assert!(closed_without_a_word(s));
    // From the balancer, silent: cut at the proxy timeout.
    let t0 = std::time::Instant::now();
    assert!(closed_without_a_word(connect_from("127.0.0.1", srv.addr)));
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // A v1 header split across two segments works; so does a LOCAL health check.
    let mut s = connect_from("127.0.0.1", srv.addr);
    s.write_all(b"PROXY TCP4 10.1.1.1 ").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"10.1.1.2 4000 21\r\n").unwrap();
    let mut c = session_over(s, &srv);
    c.cmd_expect("NOOP", 200);
    let mut s = connect_from("127.0.0.1", srv.addr);
    let mut local = Vec::new();
    encode_v2(None, &[], &mut local);
    s.write_all(&local).unwrap();
    let mut c = Ftp::from_stream(s, srv.addr);
    assert_eq!(c.read_reply().code, 220);
}

#[test]
fn per_ip_limits_count_the_clients_behind_the_balancer() {
    let (srv, _) = proxy_server(&[
        "--proxy-protocol",
        "optional",
        "--proxy-from",
        "127.0.0.1",
        "--max-sessions-per-ip",
        "1",
    ]);
    let open = |client: &str| {
        let mut s = connect_from("127.0.0.1", srv.addr);
        s.write_all(&v2(client, "192.0.2.10:21")).unwrap();
        let mut c = Ftp::from_stream(s, srv.addr);
        c.set_timeout(Duration::from_secs(10));
        (c.read_reply().code, c)
    };
    let (a, _keep_a) = open("10.0.0.1:1000");
    let (b, _keep_b) = open("10.0.0.2:1000");
    let (again, _) = open("10.0.0.1:1001");
    assert_eq!(
        (a, b, again),
        (220, 220, 421),
        "one session per client address"
    );
}

#[test]
fn a_proxy_protocol_without_balancers_does_not_start() {
    let out = ringest_cmd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--proxy-protocol",
            "required",
        ],
        Duration::from_secs(30),
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr_str().contains("proxy_from"),
        "{}",
        out.describe()
    );
}

/// HAProxy in front (send-proxy-v2 on the control port and on a passive port range), ringest
/// behind it requiring headers from HAProxy's address only.
struct Haproxy {
    child: Child,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn through_haproxy_curl_and_lftp_upload_and_the_xferlog_sees_the_client() {
    require_tool("haproxy");
    let (lo, hi) = (26100u16, 26139u16);
    let (srv, log) = proxy_server(&[
        "--proxy-protocol",
        "required",
        "--proxy-from",
        "127.0.0.1",
        "--passive-ports",
        &format!("{lo}-{hi}"),
    ]);
    let front = free_port();
    let dir = srv.scratch();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
             timeout server 60s\n\
             frontend ftp\n  bind 127.0.0.2:{front}\n  default_backend ftp\n\
             backend ftp\n  source 127.0.0.1\n  server node1 127.0.0.1:{port} send-proxy-v2\n\
             frontend pasv\n  bind 127.0.0.2:{lo}-{hi}\n  default_backend pasv\n\
             backend pasv\n  source 127.0.0.1\n  server node1 127.0.0.1 send-proxy-v2\n",
            port = srv.port
        ),
    )
    .unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting haproxy");
    let _hap = Haproxy { child };
    let front_addr = sa(&format!("127.0.0.2:{front}"));
    assert!(
        wait_until(
            || TcpStream::connect(front_addr).is_ok(),
            Duration::from_secs(10)
        ),
        "haproxy did not listen"
    );
    let local = make_test_file(&dir, "h.bin", 3 * MIB + 5, 81);
    for (i, how) in [
        &["--interface", "127.0.0.5"][..],
        &["--interface", "127.0.0.6", "--disable-epsv"][..],
    ]
    .iter()
    .enumerate()
    {
        let mut c = curl(60);
        c.args(*how).arg("-T").arg(&local).arg(format!(
            "ftp://{}:{}@{front_addr}/h{i}.bin",
            srv.user, srv.pass
        ));
        run_cmd(&mut c, Duration::from_secs(90))
            .assert_success(&format!("curl via haproxy {how:?}"));
        assert_same_file(
            &local,
            &srv.root().join(format!("h{i}.bin")),
            "upload through HAProxy",
        );
    }
    assert!(
        xferlog_has(&log, "127.0.0.5"),
        "{:?}",
        std::fs::read_to_string(&log)
    );
    assert!(
        xferlog_has(&log, "127.0.0.6"),
        "{:?}",
        std::fs::read_to_string(&log)
    );
    // lftp (passive, PASV and EPSV as it likes) through the balancer too.
    require_tool("lftp");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60", "lftp", "-u"])
        .arg(format!("{},{}", srv.user, srv.pass))
        .args(["-p", &front.to_string(), "127.0.0.2", "-e"])
        .arg(format!(
            "set ftp:ssl-allow no; set net:max-retries 1; set net:socket-bind-ipv4 127.0.0.7; \
             put {} -o l.bin; ls; bye",
            local.display()
        ))
        .env("HOME", &dir);
    run_cmd(&mut cmd, Duration::from_secs(80)).assert_success("lftp via haproxy");
    assert_same_file(
        &local,
        &srv.root().join("l.bin"),
        "lftp upload through HAProxy",
    );
    assert!(
        xferlog_has(&log, "127.0.0.7"),
        "{:?}",
        std::fs::read_to_string(&log)
    );
    // The server saw HAProxy's address (127.0.0.1) on every connection and logged the clients'.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("127.0.0.1 "),
        "no xferlog entry names the balancer: {text}"
    );
}
