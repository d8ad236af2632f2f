//! `storage = "s3"`: one ringest node landing uploads in a real 3-node Garage cluster (RF 3).
//! Objects are checked through S3 (tests/common/s3.rs), never through ringest, except where the
//! test is about reading back through ringest. The deployment with HAProxy and two nodes is
//! `tests/s3_cluster.rs`.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::time::{Duration, Instant};

use common::garage::Garage;
use common::s3::S3;
use common::{
    assert_bytes_eq, http_get, metric, metrics_addr, test_bytes, DataMode, Server, ServerOpts, MIB,
};

const PART: u64 = 5 * MIB;

/// A server storing into `endpoint` (with Garage's bucket and key), part size 5 MiB.
fn s3_server(g: &Garage, endpoint: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("s3.key");
    std::fs::write(&creds, format!("{}\n{}\n", g.key_id, g.secret)).unwrap();
    let mut args: Vec<String> = [
        "--storage",
        "s3",
        "--s3-endpoint",
        endpoint,
        "--s3-region",
        &g.region,
        "--s3-bucket",
        &g.bucket,
        "--s3-credentials-file",
        creds.to_str().unwrap(),
        "--s3-part-size",
        &PART.to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let srv = Server::start_with(ServerOpts {
        extra_args: args,
        ..ServerOpts::default()
    });
    // The credentials were read at start-up.
    drop(dir);
    srv
}

fn key(srv: &Server, name: &str) -> String {
    format!("{}/{name}", srv.user)
}

#[test]
fn uploads_of_every_size_land_byte_exact_in_stream_and_block_mode_and_read_back() {
    let g = Garage::start();
    let s3 = S3::for_garage(&g);
    let srv = s3_server(&g, &g.endpoint, &[]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    // Around the single-PUT limit (one part) and across three parts.
    let sizes = [0, 1, 4096, PART - 1, PART, PART + 1, 2 * PART, 2 * PART + 7];
    for (i, &size) in sizes.iter().enumerate() {
        let data = test_bytes(size as usize, i as u64);
        let name = format!("s-{size}.bin");
        c.stor(&name, &data, DataMode::Pasv);
        let got = s3
            .get(&key(&srv, &name))
            .unwrap()
            .expect("object after 226");
        assert_bytes_eq(&data, &got, &format!("stream upload of {size} bytes"));
        let back = c.retr(&name, DataMode::Epsv);
        assert_bytes_eq(&data, &back, &format!("RETR of {size} bytes"));
    }
    c.cmd_expect("MODE B", 200);
    for (i, &size) in [0, 3, PART + 1, 2 * PART].iter().enumerate() {
        let data = test_bytes(size as usize, 100 + i as u64);
        let name = format!("b-{size}.bin");
        // One data connection per file here; the kept connection is the next test's.
        c.stor(&name, &mode_b(&data), DataMode::Pasv);
        let got = s3
            .get(&key(&srv, &name))
            .unwrap()
            .expect("object after 226");
        assert_bytes_eq(&data, &got, &format!("MODE B upload of {size} bytes"));
    }
}

#[test]
fn a_cut_upload_and_an_abor_leave_no_object_and_the_parts_are_released() {
    let g = Garage::start();
    let s3 = S3::for_garage(&g);
    let srv = s3_server(&g, &g.endpoint, &[]);
    let maddr = metrics_addr(&srv.stdout_lines);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    // ALLO says 3 parts; the connection is cut after two of them went out as parts.
    c.cmd_expect(&format!("ALLO {}", 3 * PART), 200);
    let mut d = c.begin_transfer("STOR cut.bin");
    d.write_all(&test_bytes((2 * PART + 1000) as usize, 7))
        .unwrap();
    common::set_linger0(&d);
    drop(d);
    let r = c.read_reply();
    assert!(
        r.code == 426 || r.code == 451,
        "a cut upload fails: {r}; {}",
        c.transcript()
    );
    // ABOR in the middle of a multipart upload.
    let mut d = c.begin_transfer("STOR aborted.bin");
    d.write_all(&test_bytes((PART + 10) as usize, 8)).unwrap();
    c.send("ABOR");
    drop(d);
    let r1 = c.read_reply();
    assert!(r1.code == 426 || r1.code == 226 || r1.code == 225, "{r1}");
    if r1.code == 426 {
        c.read_reply();
    }
    for name in ["cut.bin", "aborted.bin"] {
        assert!(
            !s3.exists(&key(&srv, name)).unwrap(),
            "{name}: nothing may be visible after a failed upload"
        );
    }
    // Every part buffer is given back (the abort runs in a task of its own).
    let drained = common::wait_until(
        || {
            let (_, body) = http_get(&maddr, "/metrics");
            metric(&body, "ringest_s3_bytes_buffered") == Some(0.0)
                && metric(&body, "ringest_s3_parts_in_flight") == Some(0.0)
        },
        Duration::from_secs(20),
    );
    let (_, body) = http_get(&maddr, "/metrics");
    assert!(drained, "buffers still held after the aborts:\n{body}");
    // The session goes on.
    c.stor("after.bin", b"still here", DataMode::Pasv);
    assert_eq!(
        s3.get(&key(&srv, "after.bin")).unwrap().as_deref(),
        Some(&b"still here"[..])
    );
}

#[test]
fn what_an_object_store_cannot_do_is_refused_with_504() {
    let g = Garage::start();
    let srv = s3_server(&g, &g.endpoint, &[]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.stor("base.bin", b"0123456789", DataMode::Pasv);
    let a = c.try_upload("APPE", "base.bin", b"more", DataMode::Pasv);
    assert_eq!(a.replies[0].code, 504, "APPE: {}", c.transcript());
    c.cmd_expect("REST 5", 350);
    let a = c.try_stor("base.bin", b"tail", DataMode::Pasv);
    assert_eq!(a.replies[0].code, 504, "REST + STOR: {}", c.transcript());
    let a = c.try_upload("STOU", "x", b"u", DataMode::Pasv);
    assert_eq!(a.replies[0].code, 504, "STOU: {}", c.transcript());
    // The object is untouched by the refusals.
    let s3 = S3::for_garage(&g);
    assert_eq!(
        s3.get(&key(&srv, "base.bin")).unwrap().as_deref(),
        Some(&b"0123456789"[..])
    );
}

#[test]
fn a_store_that_is_down_gives_451_within_the_timeout_not_a_hang() {
    let g = Garage::start();
    // A port that accepts connections and never answers (the worst kind of down), and a closed
    // port.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for endpoint in [closed, silent_url] {
        let srv = s3_server(&g, &endpoint, &["--s3-timeout", "3"]);
        let maddr = metrics_addr(&srv.stdout_lines);
        let mut c = srv.login();
        c.set_timeout(Duration::from_secs(30));
        c.cmd_expect("TYPE I", 200);
        let t0 = Instant::now();
        let a = c.try_stor("down.bin", &test_bytes(10_000, 1), DataMode::Pasv);
        let took = t0.elapsed();
        assert_eq!(
            a.replies.last().unwrap().code,
            451,
            "{endpoint}: {}",
            c.transcript()
        );
        assert!(
            took < Duration::from_secs(12),
            "{endpoint}: 451 after {took:?}"
        );
        // A multipart upload fails the same way, at its first part.
        let t0 = Instant::now();
        let a = c.try_stor(
            "down-big.bin",
            &test_bytes((PART + 1) as usize, 2),
            DataMode::Pasv,
        );
        assert_eq!(a.replies.last().unwrap().code, 451, "{}", c.transcript());
        assert!(t0.elapsed() < Duration::from_secs(12));
        // Listing and SIZE answer too.
        let t0 = Instant::now();
        let r = c.cmd("SIZE down.bin");
        assert_eq!(r.code, 451, "{}", c.transcript());
        assert!(t0.elapsed() < Duration::from_secs(12));
        let (_, body) = http_get(&maddr, "/metrics");
        assert!(
            metric(&body, "ringest_s3_errors_total").unwrap_or(0.0) >= 2.0,
            "{body}"
        );
        let _ = c.stream().shutdown(Shutdown::Both);
    }
    drop(silent);
}

#[test]
fn ftps_uploads_land_in_the_store_and_read_back() {
    let g = Garage::start();
    let s3 = S3::for_garage(&g);
    let srv = s3_server(&g, &g.endpoint, &[]);
    let cert = {
        let line = common::startup_line(&srv, "ringest: TLS certificate ");
        std::path::PathBuf::from(line.split('"').nth(1).unwrap())
    };
    for (i, size) in [10_000u64, 2 * PART + 3].into_iter().enumerate() {
        let name = format!("tls-{size}.bin");
        let local = common::make_test_file(&srv.scratch(), &name, size, 900 + i as u64);
        let mut c = common::curl(90);
        c.args(["--ssl-reqd", "--cacert"])
            .arg(&cert)
            .arg("-T")
            .arg(&local)
            .arg(srv.url(&name));
        common::run_cmd(&mut c, Duration::from_secs(120)).assert_success("curl --ssl-reqd -T");
        let want = std::fs::read(&local).unwrap();
        let got = s3.get(&key(&srv, &name)).unwrap().expect("object");
        assert_bytes_eq(&want, &got, &format!("FTPS upload of {size} bytes"));
        let back = srv.scratch().join(format!("{name}.back"));
        let mut c = common::curl(90);
        c.args(["--ssl-reqd", "--cacert"])
            .arg(&cert)
            .arg("-o")
            .arg(&back)
            .arg(srv.url(&name));
        common::run_cmd(&mut c, Duration::from_secs(120)).assert_success("curl --ssl-reqd RETR");
        common::assert_same_file(&local, &back, "FTPS download");
    }
    // A listing through the store, as curl shows a directory.
    let mut c = common::curl(30);
    c.args(["--ssl-reqd", "--cacert"])
        .arg(&cert)
        .arg(srv.url(""));
    let out = common::run_cmd(&mut c, Duration::from_secs(60));
    out.assert_success("curl LIST");
    for size in [10_000u64, 2 * PART + 3] {
        assert!(
            out.stdout_str().contains(&format!("tls-{size}.bin")),
            "{}",
            out.stdout_str()
        );
    }
}

/// MODE B framing of `data`: blocks of at most 60,000 bytes, then an empty EOF block.
fn mode_b(data: &[u8]) -> Vec<u8> {
    let mut framed = Vec::new();
    for chunk in data.chunks(60_000) {
        framed.push(0u8);
        framed.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        framed.extend_from_slice(chunk);
    }
    framed.extend_from_slice(&[64, 0, 0]);
    framed
}

#[test]
fn mode_b_keeps_one_data_connection_across_files_into_the_store() {
    let g = Garage::start();
    let s3 = S3::for_garage(&g);
    let srv = s3_server(&g, &g.endpoint, &[]);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.cmd_expect("MODE B", 200);
    let addr = c.pasv();
    let d = std::net::TcpStream::connect(addr).unwrap();
    let sizes = [0usize, 5, 70_000, (PART + 1) as usize, 3];
    // All frames in one write: each file's EOF block is followed at once by the next file's
    // blocks, which the server keeps for the next STOR.
    let mut wire = Vec::new();
    let mut files = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data = test_bytes(size, 300 + i as u64);
        wire.extend_from_slice(&mode_b(&data));
        files.push(data);
    }
    let writer = {
        let mut d2 = d.try_clone().unwrap();
        std::thread::spawn(move || d2.write_all(&wire))
    };
    for (i, data) in files.iter().enumerate() {
        c.send(&format!("STOR kept-{i}.bin"));
        let first = c.read_reply();
        let want = if i == 0 { 150 } else { 125 };
        assert_eq!(first.code, want, "{}", c.transcript());
        let fin = c.read_reply();
        assert!(fin.code == 226 || fin.code == 250, "{}", c.transcript());
        let got = s3
            .get(&key(&srv, &format!("kept-{i}.bin")))
            .unwrap()
            .expect("object");
        assert_bytes_eq(data, &got, &format!("kept-connection file {i}"));
    }
    writer.join().unwrap().unwrap();
    d.shutdown(Shutdown::Both).unwrap();
}
