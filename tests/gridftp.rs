//! MODE E (GridFTP extended block mode) with the real `globus-url-copy` (Debian package
//! `globus-gass-copy-progs`): single files of every size up and down with `-fast`, `-p 4` and
//! `-fast -pp`, without `-fast`, a directory of many files each way with `-r` over cached data
//! connections, byte-exact on disk; a parallel upload whose connection is cut lands nothing; a
//! download after `REST` ranges carries only the missing bytes.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn server() -> Server {
    Server::start_with(ServerOpts {
        extra_args: vec!["--tls".into(), "off".into()],
        ..ServerOpts::default()
    })
}

#[test]
fn single_files_of_every_size_up_and_down_with_parallel_connections() {
    let srv = server();
    let opts: [&[&str]; 3] = [&["-fast"], &["-p", "4"], &["-fast", "-pp"]];
    for (i, size) in [0u64, 1, MIB + 1, 256 * MIB].into_iter().enumerate() {
        let name = format!("e{i}.bin");
        let local = make_test_file(&srv.scratch(), &name, size, 90 + i as u64);
        let src = format!("file://{}", local.display());
        for args in opts {
            let what = format!("{size} bytes, globus-url-copy {args:?}");
            std::fs::remove_file(srv.root().join(&name)).ok();
            guc(args, &src, &guc_url(&srv, &name)).assert_success(&format!("upload of {what}"));
            assert_same_file(
                &local,
                &srv.root().join(&name),
                &format!("upload of {what}"),
            );
            let back = srv.scratch().join(format!("back{i}.bin"));
            std::fs::remove_file(&back).ok();
            let dst = format!("file://{}", back.display());
            guc(args, &guc_url(&srv, &name), &dst).assert_success(&format!("download of {what}"));
            assert_same_file(&local, &back, &format!("download of {what}"));
        }
    }
    // Without -fast the connections are not cached; -p 2.
    let local = make_test_file(&srv.scratch(), "nofast.bin", 3 * MIB + 3, 99);
    let src = format!("file://{}", local.display());
    guc(&["-p", "2"], &src, &guc_url(&srv, "nofast.bin")).assert_success("globus-url-copy -p 2");
    assert_same_file(
        &local,
        &srv.root().join("nofast.bin"),
        "MODE E upload without -fast",
    );
    // -stripe: SPAS answered with one stripe for the upload; the download takes PORT.
    guc(&["-stripe", "-p", "2"], &src, &guc_url(&srv, "striped.bin"))
        .assert_success("globus-url-copy -stripe (upload)");
    assert_same_file(&local, &srv.root().join("striped.bin"), "-stripe upload");
    let back = srv.scratch().join("striped.back");
    guc(
        &["-stripe", "-p", "2"],
        &guc_url(&srv, "striped.bin"),
        &format!("file://{}", back.display()),
    )
    .assert_success("globus-url-copy -stripe (download)");
    assert_same_file(&local, &back, "-stripe download");
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
        guc(args, &src, &guc_url(&srv, &format!("{target}/")))
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
    // And back: an MLSD and 1,000 RETRs over the connections the first send opened.
    for (args, back) in [
        (&["-fast", "-cd", "-r"][..], "back"),
        (&["-fast", "-p", "4", "-pp", "-cd", "-r"][..], "back4"),
    ] {
        let dst = srv.scratch().join(back);
        guc(
            args,
            &guc_url(&srv, "many/"),
            &format!("file://{}/", dst.display()),
        )
        .assert_success(&format!("globus-url-copy {args:?} (download)"));
        for i in 0..1000u64 {
            let name = format!("f{i}.bin");
            assert_same_file(&dir.join(&name), &dst.join(&name), "MODE E -r download");
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

/// A logged-in control connection in TYPE I and MODE E.
fn mode_e_session(srv: &Server) -> TcpStream {
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert!(reply(&mut c).starts_with("220"));
    assert!(cmd(&mut c, &format!("USER {}", srv.user)).starts_with("331"));
    assert!(cmd(&mut c, &format!("PASS {}", srv.pass)).starts_with("230"));
    assert!(cmd(&mut c, "TYPE I").starts_with("200"));
    assert!(cmd(&mut c, "MODE E").starts_with("200"));
    c
}

/// Sends PASV; the port of the 227 reply.
fn pasv_port(c: &mut TcpStream) -> u16 {
    let pasv = cmd(c, "PASV");
    let nums: Vec<u16> = pasv
        .split(['(', ')'])
        .nth(1)
        .unwrap()
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    nums[4] * 256 + nums[5]
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
    let mut c = mode_e_session(&srv);
    let port = pasv_port(&mut c);
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
    // Nothing landed, and the session goes on.
    let r = cmd(&mut c, "SIZE cut.bin");
    assert!(r.starts_with("550"), "{r}");
    drop(d1);
}

/// Reads one MODE E block from `s`: descriptor, offset (EOF: the EOD count), payload.
fn read_block(s: &mut TcpStream) -> (u8, u64, Vec<u8>) {
    let mut h = [0u8; 17];
    s.read_exact(&mut h).unwrap();
    let count = u64::from_be_bytes(h[1..9].try_into().unwrap());
    let offset = u64::from_be_bytes(h[9..17].try_into().unwrap());
    let mut payload = vec![0u8; count as usize];
    s.read_exact(&mut payload).unwrap();
    (h[0], offset, payload)
}

/// Reads blocks until this connection's EOD; returns the data blocks and whether the EOD carried
/// the EOF (with its EOD count).
fn read_part(s: &mut TcpStream) -> (Vec<(u64, Vec<u8>)>, Option<u64>) {
    let mut blocks = Vec::new();
    loop {
        let (desc, offset, payload) = read_block(s);
        if desc & 0x08 != 0 {
            return (blocks, (desc & 0x40 != 0).then_some(offset));
        }
        assert_eq!(desc, 0, "unexpected descriptor");
        blocks.push((offset, payload));
    }
}

#[test]
fn a_download_sends_over_the_connections_it_opens_and_skips_rest_ranges() {
    let srv = server();
    let size = 3 * MIB + 5;
    let local = make_test_file(srv.root(), "src.bin", size, 7);
    let want = std::fs::read(&local).unwrap();
    let mut c = mode_e_session(&srv);
    assert!(cmd(&mut c, "OPTS RETR Parallelism=3,3,3;").starts_with("200"));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    assert!(cmd(&mut c, &format!("PORT 127,0,0,1,{},{}", p >> 8, p & 255)).starts_with("200"));
    c.write_all(b"RETR src.bin\r\n").unwrap();
    // The server opens all three connections before it answers.
    let mut conns: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
    for d in &conns {
        d.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    assert!(reply(&mut c).starts_with("150"));
    let mut got = vec![0u8; size as usize];
    let mut eofs = Vec::new();
    for d in conns.iter_mut() {
        let (blocks, eof) = read_part(d);
        for (off, payload) in blocks {
            got[off as usize..off as usize + payload.len()].copy_from_slice(&payload);
        }
        eofs.extend(eof);
    }
    assert_eq!(eofs, vec![3], "one EOF, announcing the three connections");
    assert!(got == want, "MODE E download differs from the file");
    assert!(reply(&mut c).starts_with("226"));
    // A restarted download: only the ranges the client lacks, on the same connections.
    assert!(cmd(&mut c, "REST 0-1000,2000000-3145733").starts_with("350"));
    let r = cmd(&mut c, "RETR src.bin");
    assert!(r.starts_with("125"), "{r}");
    let mut sent = Vec::new();
    for d in conns.iter_mut() {
        let (blocks, _) = read_part(d);
        for (off, payload) in blocks {
            assert_eq!(
                &payload[..],
                &want[off as usize..off as usize + payload.len()]
            );
            sent.push((off, off + payload.len() as u64));
        }
    }
    sent.sort_unstable();
    let mut at = 1000;
    for (a, b) in &sent {
        assert_eq!(*a, at, "a gap or an overlap in {sent:?}");
        at = *b;
    }
    assert_eq!(
        at, 2_000_000,
        "the send must stop where the client's range starts"
    );
    assert!(reply(&mut c).starts_with("226"));
    // A range REST means nothing outside MODE E or for uploads.
    assert!(cmd(&mut c, "REST 0-5").starts_with("350"));
    assert!(cmd(&mut c, "STOR up.bin").starts_with("554"));
    assert!(cmd(&mut c, "MODE S").starts_with("200"));
    assert!(cmd(&mut c, "REST 0-5").starts_with("501"));
}

#[test]
fn many_connections_opened_before_the_stor_all_count() {
    let srv = server();
    let mut c = mode_e_session(&srv);
    let port = pasv_port(&mut c);
    // All 40 connect (and send their part) before the server accepts any: none may be dropped.
    let n = 40u64;
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for (i, d) in conns.iter_mut().enumerate() {
        d.write_all(&block(0, i as u64 * 100, &[i as u8; 100]))
            .unwrap();
        let last = i as u64 + 1 == n;
        d.write_all(&block(
            if last { 0x48 } else { 0x08 },
            if last { n } else { 0 },
            &[],
        ))
        .unwrap();
    }
    let r = cmd(&mut c, "STOR many.bin");
    assert!(r.starts_with("150"), "{r}");
    let r = reply(&mut c);
    assert!(r.starts_with("226"), "{r}");
    let got = std::fs::read(srv.root().join("many.bin")).unwrap();
    let want: Vec<u8> = (0..n).flat_map(|i| [i as u8; 100]).collect();
    assert!(
        got == want,
        "the file differs from what the 40 connections sent"
    );
}

#[test]
fn partial_transfers_with_off_and_len_use_eret_and_esto() {
    let srv = server();
    let local = make_test_file(&srv.scratch(), "whole.bin", 3 * MIB, 5);
    let want = std::fs::read(&local).unwrap();
    std::fs::copy(&local, srv.root().join("whole.bin")).unwrap();
    for (i, args) in [&[][..], &["-p", "2"][..], &["-fast", "-p", "3"][..]]
        .into_iter()
        .enumerate()
    {
        let (off, len) = (100_000 + i, 1_500_000);
        let (o, l) = (off.to_string(), len.to_string());
        let opts: Vec<&str> = args
            .iter()
            .copied()
            .chain(["-off", &o, "-len", &l])
            .collect();
        // ERET P: the bytes land at the same offset of the local file.
        let back = srv.scratch().join(format!("part{i}.bin"));
        guc(
            &opts,
            &guc_url(&srv, "whole.bin"),
            &format!("file://{}", back.display()),
        )
        .assert_success(&format!("partial download {opts:?}"));
        let got = std::fs::read(&back).unwrap();
        assert_eq!(got.len(), off + len, "{opts:?}");
        assert!(got[off..] == want[off..off + len], "{opts:?}: ERET bytes");
        // ESTO A: written into the server's file at the offset, a hole below it.
        let name = format!("esto{i}.bin");
        guc(
            &opts,
            &format!("file://{}", local.display()),
            &guc_url(&srv, &name),
        )
        .assert_success(&format!("partial upload {opts:?}"));
        let got = std::fs::read(srv.root().join(&name)).unwrap();
        assert_eq!(got.len(), off + len, "{opts:?}");
        assert!(got[..off].iter().all(|&b| b == 0), "{opts:?}: the hole");
        assert!(got[off..] == want[off..off + len], "{opts:?}: ESTO bytes");
    }
}
