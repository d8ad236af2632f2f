//! MODE E (GridFTP extended block mode) uploads with the real `globus-url-copy` (Debian package
//! `globus-gass-copy-progs`): single files with `-fast -p 4`, without `-fast`, a directory of many
//! files with `-fast -pp -r` over cached data connections, byte-exact on disk; a parallel upload
//! whose connection is cut lands nothing; what is not supported yet (downloads) fails clearly.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

fn guc(args: &[&str], src: &str, dst: &str) -> CmdOutput {
    require_tool("globus-url-copy");
    let mut c = Command::new("timeout");
    c.args(["-k", "5", "120", "globus-url-copy"])
        .args(args)
        .arg(src)
        .arg(dst);
    run_cmd(&mut c, Duration::from_secs(150))
}

fn server() -> Server {
    Server::start_with(ServerOpts {
        extra_args: vec!["--tls".into(), "off".into()],
        ..ServerOpts::default()
    })
}

fn url(srv: &Server, path: &str) -> String {
    format!(
        "ftp://{}:{}@127.0.0.1:{}/{path}",
        srv.user, srv.pass, srv.port
    )
}

#[test]
fn single_files_of_every_size_with_parallel_connections() {
    let srv = server();
    for (i, size) in [0u64, 1, MIB + 1, 64 * MIB].into_iter().enumerate() {
        let name = format!("e{i}.bin");
        let local = make_test_file(&srv.scratch(), &name, size, 90 + i as u64);
        let src = format!("file://{}", local.display());
        guc(&["-fast", "-p", "4"], &src, &url(&srv, &name))
            .assert_success("globus-url-copy -fast -p 4");
        assert_same_file(&local, &srv.root().join(&name), "MODE E upload");
    }
    // Without -fast the connections are not cached; -p 2.
    let local = make_test_file(&srv.scratch(), "nofast.bin", 3 * MIB + 3, 99);
    let src = format!("file://{}", local.display());
    guc(&["-p", "2"], &src, &url(&srv, "nofast.bin")).assert_success("globus-url-copy -p 2");
    assert_same_file(
        &local,
        &srv.root().join("nofast.bin"),
        "MODE E upload without -fast",
    );
}

#[test]
fn a_directory_of_many_files_over_cached_pipelined_connections() {
    let srv = server();
    let dir = srv.scratch().join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1000u64 {
        make_test_file(&dir, &format!("f{i}.bin"), (i * 37) % 9000, 1000 + i);
    }
    let src = format!("file://{}/", dir.display());
    for (args, target) in [
        (&["-fast", "-pp", "-cd", "-r"][..], "many"),
        (&["-fast", "-p", "4", "-pp", "-cd", "-r"][..], "many4"),
    ] {
        guc(args, &src, &url(&srv, &format!("{target}/")))
            .assert_success(&format!("globus-url-copy {args:?}"));
        for i in 0..1000u64 {
            let name = format!("f{i}.bin");
            assert_same_file(
                &dir.join(&name),
                &srv.root().join(target).join(&name),
                "MODE E -r",
            );
        }
    }
}

/// Reads one reply line (single-line replies only).
fn reply(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

fn cmd(s: &mut TcpStream, line: &str) -> String {
    s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    reply(s)
}

fn block(desc: u8, offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![desc];
    b.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn a_cut_parallel_upload_is_426_and_lands_nothing() {
    let srv = Server::start_with(ServerOpts {
        extra_args: vec![
            "--tls".into(),
            "off".into(),
            "--data-timeout".into(),
            "3".into(),
        ],
        ..ServerOpts::default()
    });
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(reply(&mut c).starts_with("220"));
    assert!(cmd(&mut c, &format!("USER {}", srv.user)).starts_with("331"));
    assert!(cmd(&mut c, &format!("PASS {}", srv.pass)).starts_with("230"));
    assert!(cmd(&mut c, "TYPE I").starts_with("200"));
    assert!(cmd(&mut c, "MODE E").starts_with("200"));
    let pasv = cmd(&mut c, "PASV");
    let nums: Vec<u16> = pasv
        .split(['(', ')'])
        .nth(1)
        .unwrap()
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let port = nums[4] * 256 + nums[5];
    assert!(cmd(&mut c, "STOR cut.bin").starts_with("150"));
    let mut d1 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut d2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Connection 1 sends its half and ends properly; connection 2 sends part and is cut.
    d1.write_all(&block(0, 0, &[7u8; 5000])).unwrap();
    d1.write_all(&block(0x08, 0, &[])).unwrap();
    d2.write_all(&block(0, 5000, &[8u8; 100])).unwrap();
    drop(d2);
    let r = reply(&mut c);
    assert!(r.starts_with("426"), "{r}");
    assert!(
        !srv.root().join("cut.bin").exists(),
        "a cut MODE E upload landed"
    );
    // A download in MODE E is refused with a reply that says so.
    let r = cmd(&mut c, "RETR cut.bin");
    assert!(r.starts_with("504") || r.starts_with("425"), "{r}");
    drop(d1);
}
