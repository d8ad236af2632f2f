//! Production command set over the raw client: APPE, REST+STOR/RETR, RNFR/RNTO, RMD, MDTM,
//! MLST/MLSD, STAT (idle and during a transfer), HELP, ALLO, ACCT, SITE, FEAT, ABOR (upload,
//! download, idle), TYPE A conversion, UTF-8/space names and CR/LF injection.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

fn upload_ok(c: &mut Ftp, verb: &str, name: &str, data: &[u8]) {
    let a = c.try_upload(verb, name, data, DataMode::Pasv);
    if !a.succeeded() {
        c.fail(&format!(
            "{verb} {name} ({} bytes): expected 150 then 226, got {:?}",
            data.len(),
            a.replies
        ));
    }
}

fn nlst(c: &mut Ftp) -> Vec<String> {
    c.listing("NLST", DataMode::Pasv)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn appe_creates_then_appends() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    upload_ok(&mut c, "APPE", "log.txt", b"first part;");
    assert_file_content(
        &srv.root().join("log.txt"),
        b"first part;",
        "APPE onto a missing file",
    );
    upload_ok(&mut c, "APPE", "log.txt", b"second part");
    assert_file_content(
        &srv.root().join("log.txt"),
        b"first part;second part",
        "APPE onto an existing file",
    );
    let big = test_bytes(3 * MIB as usize + 7, 41);
    upload_ok(&mut c, "APPE", "log.txt", &big);
    let mut want = b"first part;second part".to_vec();
    want.extend_from_slice(&big);
    assert_file_content(&srv.root().join("log.txt"), &want, "APPE of 3 MiB");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn rest_stor_continues_visible_file_and_truncates() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let full = test_bytes(2 * MIB as usize + 123, 7);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        // A partial upload (first 700000 bytes), then resume at 700000.
        upload_ok(&mut c, "STOR", "resume.bin", &full[..700_000]);
        c.cmd_expect("REST 700000", 350);
        upload_ok(&mut c, "STOR", "resume.bin", &full[700_000..]);
        assert_file_content(&srv.root().join("resume.bin"), &full, "REST 700000 + STOR");
        // Resume at an offset below the current size: the file is truncated there.
        c.cmd_expect("REST 100", 350);
        upload_ok(&mut c, "STOR", "resume.bin", b"TAIL");
        let mut want = full[..100].to_vec();
        want.extend_from_slice(b"TAIL");
        assert_file_content(
            &srv.root().join("resume.bin"),
            &want,
            "REST 100 + STOR of 4 bytes onto a 2 MiB file (must truncate at 100)",
        );
        // REST 0 + STOR behaves as a plain STOR.
        c.cmd_expect("REST 0", 350);
        upload_ok(&mut c, "STOR", "resume.bin", b"fresh");
        assert_file_content(&srv.root().join("resume.bin"), b"fresh", "REST 0 + STOR");
        // The REST marker is consumed: a following STOR replaces.
        upload_ok(&mut c, "STOR", "resume.bin", b"x");
        assert_file_content(&srv.root().join("resume.bin"), b"x", "STOR after REST+STOR");
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn rest_retr_downloads_from_offset() {
    let srv = Server::start();
    let data = test_bytes(1_000_000, 9);
    fs::write(srv.root().join("dl.bin"), &data).unwrap();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    for off in [0usize, 1, 65_536, 300_001, 999_999, 1_000_000] {
        c.cmd_expect(&format!("REST {off}"), 350);
        let got = c.retr("dl.bin", DataMode::Pasv);
        assert_bytes_eq(&data[off..], &got, &format!("REST {off} + RETR"));
    }
    // The marker does not stick.
    let got = c.retr("dl.bin", DataMode::Pasv);
    assert_bytes_eq(&data, &got, "RETR after REST+RETR");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn rnfr_rnto_and_errors() {
    let srv = Server::start();
    fs::write(srv.root().join("a.txt"), b"AAA").unwrap();
    let mut c = srv.login();
    c.cmd_expect("RNFR a.txt", 350);
    c.cmd_expect("RNTO b.txt", 250);
    assert!(
        !srv.root().join("a.txt").exists(),
        "a.txt still exists after rename"
    );
    assert_file_content(&srv.root().join("b.txt"), b"AAA", "renamed file");
    // RNTO without RNFR.
    c.cmd_expect("RNTO c.txt", 503);
    // RNFR of a missing file.
    c.cmd_expect("RNFR missing.txt", 550);
    // After a failed RNFR, RNTO has nothing to rename.
    c.cmd_expect("RNTO c.txt", 503);
    // Rename into a subdirectory and a directory rename.
    c.cmd_expect("MKD sub", 257);
    c.cmd_expect("RNFR b.txt", 350);
    c.cmd_expect("RNTO sub/b2.txt", 250);
    assert_file_content(&srv.root().join("sub/b2.txt"), b"AAA", "renamed into sub/");
    c.cmd_expect("RNFR sub", 350);
    c.cmd_expect("RNTO sub2", 250);
    assert!(srv.root().join("sub2/b2.txt").is_file(), "directory rename");
    // RNFR then another command: the pending rename is dropped.
    c.cmd_expect("RNFR sub2", 350);
    c.cmd_expect("NOOP", 200);
    let r = c.cmd("RNTO sub3");
    assert_eq!(
        r.code,
        503,
        "RNTO after RNFR+NOOP: expected 503, got {r}\n{}",
        c.transcript()
    );
    assert!(
        srv.root().join("sub2").is_dir(),
        "sub2 renamed despite intervening NOOP"
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn rmd_removes_empty_directory() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("MKD d1", 257);
    assert!(srv.root().join("d1").is_dir());
    c.cmd_expect("RMD d1", 250);
    assert!(!srv.root().join("d1").exists(), "RMD d1 did not remove it");
    c.cmd_expect("RMD d1", 550);
    c.cmd_expect("MKD d2", 257);
    fs::write(srv.root().join("d2/f"), b"x").unwrap();
    let r = c.cmd("RMD d2");
    assert_eq!(
        r.first_digit(),
        5,
        "RMD of a non-empty dir: expected 5xx, got {r}"
    );
    assert!(
        srv.root().join("d2/f").is_file(),
        "RMD of a non-empty dir removed content"
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn mdtm_reports_utc_mtime() {
    let srv = Server::start();
    let p = srv.root().join("t.txt");
    fs::write(&p, b"x").unwrap();
    // 2021-03-04 05:06:07 UTC
    let t = UNIX_EPOCH + Duration::from_secs(1_614_834_367);
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let mut c = srv.login();
    let r = c.cmd_expect("MDTM t.txt", 213);
    let v = r.lines[0][4..].trim();
    assert!(
        v == "20210304050607" || v.starts_with("20210304050607."),
        "MDTM: expected 213 20210304050607, got {r}"
    );
    c.cmd_expect("MDTM missing.txt", 550);
    c.cmd_expect("QUIT", 221);
}

fn parse_facts(line: &str) -> (std::collections::HashMap<String, String>, String) {
    let (facts, name) = line.split_once(' ').unwrap_or((line, ""));
    let mut m = std::collections::HashMap::new();
    for f in facts.split(';').filter(|f| !f.is_empty()) {
        let (k, v) = f.split_once('=').unwrap_or((f, ""));
        m.insert(k.to_ascii_lowercase(), v.to_string());
    }
    (m, name.to_string())
}

#[test]
fn mlst_and_mlsd_facts() {
    let srv = Server::start();
    let data = test_bytes(12_345, 3);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    upload_ok(&mut c, "STOR", "m.bin", &data);
    c.cmd_expect("MKD mdir", 257);

    let r = c.cmd_expect("MLST m.bin", 250);
    assert!(
        r.lines.len() >= 3
            && r.lines[0].starts_with("250-")
            && r.lines.last().unwrap().starts_with("250 "),
        "MLST: expected a multi-line 250 reply, got {r}"
    );
    let facts: Vec<&String> = r.lines[1..r.lines.len() - 1].iter().collect();
    assert_eq!(
        facts.len(),
        1,
        "MLST: expected exactly one facts line, got {r}"
    );
    let fl = facts[0];
    assert!(
        fl.starts_with(' ') && !fl.starts_with("  "),
        "MLST facts line must start with exactly one space: {fl:?}"
    );
    let (m, name) = parse_facts(&fl[1..]);
    assert_eq!(
        m.get("type").map(|s| s.as_str()),
        Some("file"),
        "MLST type: {fl:?}"
    );
    assert_eq!(
        m.get("size").map(|s| s.as_str()),
        Some("12345"),
        "MLST size: {fl:?}"
    );
    assert!(
        m.get("modify")
            .map(|s| s.len() >= 14 && s[..14].bytes().all(|b| b.is_ascii_digit()))
            == Some(true),
        "MLST modify: {fl:?}"
    );
    assert!(name.ends_with("m.bin"), "MLST name: {fl:?}");
    c.cmd_expect("MLST missing.bin", 550);

    let text = c.listing("MLSD", DataMode::Pasv);
    let mut seen_file = false;
    let mut seen_dir = false;
    for line in text.lines() {
        assert!(
            line.ends_with('\r') || text.contains("\r\n"),
            "MLSD lines must end with CRLF: {text:?}"
        );
        let line = line.trim_end_matches('\r');
        let (m, name) = parse_facts(line);
        for fact in ["type", "modify", "perm", "unique"] {
            assert!(m.contains_key(fact), "MLSD line lacks {fact}: {line:?}");
        }
        if name == "m.bin" {
            seen_file = true;
            assert_eq!(m["type"], "file", "{line:?}");
            assert_eq!(m.get("size").map(|s| s.as_str()), Some("12345"), "{line:?}");
        }
        if name == "mdir" {
            seen_dir = true;
            assert_eq!(m["type"], "dir", "{line:?}");
        }
    }
    assert!(seen_file && seen_dir, "MLSD lacks m.bin or mdir: {text:?}");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn stat_help_allo_acct_site_feat() {
    let srv = Server::start();
    let mut c = srv.login();
    let r = c.cmd_expect("STAT", 211);
    assert!(
        r.lines.len() >= 2
            && r.lines[0].starts_with("211-")
            && r.lines.last().unwrap().starts_with("211 "),
        "STAT: expected a multi-line 211 reply, got {r}"
    );
    let r = c.cmd_expect("HELP", 214);
    assert!(r.text().contains("STOR"), "HELP does not mention STOR: {r}");
    c.cmd_expect("ACCT billing", 202);
    // SITE CHMOD is implemented (issue 10): on a missing file it is 550; an unknown SITE
    // subcommand is still 502.
    let r = c.cmd("SITE CHMOD 777 x");
    assert_eq!(
        r.code, 550,
        "SITE CHMOD on a missing file: expected 550, got {r}"
    );
    let r = c.cmd("SITE IDLE 60");
    assert_eq!(r.code, 502, "SITE IDLE: expected 502, got {r}");
    // Without an argument, 501 (syntax) is as right as 502.
    let r = c.cmd("SITE");
    assert!(
        matches!(r.code, 501 | 502),
        "bare SITE: expected 501/502, got {r}"
    );

    c.cmd_expect("TYPE I", 200);
    c.cmd_expect("ALLO 5000", 200);
    let data = test_bytes(5000, 11);
    upload_ok(&mut c, "STOR", "allo.bin", &data);
    assert_file_content(&srv.root().join("allo.bin"), &data, "STOR after ALLO");

    let r = c.cmd_expect("FEAT", 211);
    let feats: Vec<String> = r.lines[1..r.lines.len().saturating_sub(1)]
        .iter()
        .map(|l| l.trim().to_ascii_uppercase())
        .collect();
    for want in [
        "EPRT",
        "EPSV",
        "MDTM",
        "MLST",
        "PASV",
        "REST STREAM",
        "SIZE",
        "TVFS",
        "UTF8",
    ] {
        let ok = feats.iter().any(|f| {
            if want == "MLST" {
                f == "MLST" || f.starts_with("MLST ")
            } else {
                f == want
            }
        });
        assert!(ok, "FEAT lacks {want:?}: {r}");
    }
    for l in &r.lines[1..r.lines.len() - 1] {
        assert!(
            l.starts_with(' '),
            "FEAT feature line must start with a space: {l:?}"
        );
    }
    c.cmd_expect("QUIT", 221);
}

/// Writes to `s` in a background thread until stopped or an error (at most `limit`).
fn spawn_writer(
    mut s: TcpStream,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let chunk = test_bytes(64 * 1024, 77);
        let start = Instant::now();
        let mut sent = 0u64;
        s.set_write_timeout(Some(Duration::from_millis(500))).ok();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
            match s.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            thread::sleep(Duration::from_millis(2));
        }
        sent
    })
}

#[test]
fn abor_mid_upload_leaves_nothing() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let d = c.begin_transfer("STOR aborted.bin");
        let stop = Arc::new(AtomicBool::new(false));
        let w = spawn_writer(d, stop.clone(), Duration::from_secs(20));
        thread::sleep(Duration::from_millis(400));
        c.send("ABOR");
        let r1 = c.read_reply();
        let r2 = c.read_reply();
        stop.store(true, Ordering::Relaxed);
        let sent = w.join().unwrap();
        eprintln!("sent {sent} bytes before/around ABOR");
        assert!(sent > 0, "nothing was sent before ABOR");
        assert_eq!(
            (r1.code, r2.code),
            (426, 226),
            "ABOR mid-upload: expected 426 then 226, got {r1} / {r2}\n{}",
            c.transcript()
        );
        assert!(
            !srv.root().join("aborted.bin").exists(),
            "aborted upload is visible under its final name on disk"
        );
        let names = nlst(&mut c);
        assert!(
            !names.iter().any(|n| n.contains("aborted")),
            "NLST after ABOR: {names:?}"
        );
        let list = c.listing("LIST", DataMode::Pasv);
        assert!(
            !list.contains("aborted") && !list.contains(".ringest-"),
            "LIST after ABOR: {list:?}"
        );
        assert!(
            wait_until(|| dir_names(srv.root()).is_empty(), Duration::from_secs(5)),
            "files left on disk 5 s after ABOR: {:?}",
            dir_names(srv.root())
        );
        // The session still works.
        upload_ok(&mut c, "STOR", "after.bin", b"after abort");
        assert_file_content(
            &srv.root().join("after.bin"),
            b"after abort",
            "STOR after ABOR",
        );
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn abor_mid_download() {
    let srv = Server::start();
    write_test_file(&srv.root().join("big.bin"), 64 * MIB, 5);
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let mut d = c.begin_transfer("RETR big.bin");
    let mut buf = vec![0u8; 65536];
    let n = d.read(&mut buf).unwrap();
    assert!(n > 0, "no data before ABOR");
    // Do not read any further: the server is blocked on a full socket.
    thread::sleep(Duration::from_millis(200));
    c.send("ABOR");
    let r1 = c.read_reply();
    let codes = if r1.code == 426 {
        let r2 = c.read_reply();
        vec![r1.code, r2.code]
    } else {
        vec![r1.code]
    };
    assert!(
        codes == vec![426, 226] || codes == vec![226],
        "ABOR mid-download: expected 426+226 (or 226), got {codes:?}\n{}",
        c.transcript()
    );
    drop(d);
    c.cmd_expect("NOOP", 200);
    let got = c.retr("big.bin", DataMode::Pasv);
    assert_eq!(got.len() as u64, 64 * MIB, "RETR after ABOR");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn abor_when_idle_is_226() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("ABOR", 226);
    c.cmd_expect("NOOP", 200);
    c.cmd_expect("QUIT", 221);
}

#[test]
fn stat_during_upload_is_213() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let data = test_bytes(2 * MIB as usize, 13);
    let mut d = c.begin_transfer("STOR stat.bin");
    d.write_all(&data[..MIB as usize]).unwrap();
    c.send("STAT");
    let r = c.read_reply();
    assert_eq!(
        r.code,
        213,
        "STAT during an upload: expected 213, got {r}\n{}",
        c.transcript()
    );
    d.write_all(&data[MIB as usize..]).unwrap();
    d.shutdown(Shutdown::Write).unwrap();
    drop(d);
    let r = c.read_reply();
    assert_eq!(
        r.code,
        226,
        "upload after STAT: expected 226, got {r}\n{}",
        c.transcript()
    );
    assert_file_content(
        &srv.root().join("stat.bin"),
        &data,
        "upload with STAT in the middle",
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn type_a_converts_line_ends() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE A", 200);
    upload_ok(
        &mut c,
        "STOR",
        "text.txt",
        b"line one\r\nline two\r\n\r\nlast\r\n",
    );
    assert_file_content(
        &srv.root().join("text.txt"),
        b"line one\nline two\n\nlast\n",
        "TYPE A upload with CRLF must be stored with LF",
    );
    fs::write(srv.root().join("lf.txt"), b"alpha\nbeta\n\ngamma\n").unwrap();
    let got = c.retr("lf.txt", DataMode::Pasv);
    assert_bytes_eq(
        b"alpha\r\nbeta\r\n\r\ngamma\r\n",
        &got,
        "TYPE A RETR of an LF file (wire)",
    );
    c.cmd_expect("TYPE I", 200);
    let got = c.retr("lf.txt", DataMode::Pasv);
    assert_bytes_eq(b"alpha\nbeta\n\ngamma\n", &got, "TYPE I RETR of an LF file");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn utf8_and_space_names_roundtrip() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    let names = [
        "héllo wörld ✓.txt",
        "name with  two spaces.bin",
        "trailing-space ",
        "日本語ファイル.dat",
    ];
    for (i, n) in names.iter().enumerate() {
        let data = test_bytes(1000 + i, 50 + i as u64);
        upload_ok(&mut c, "STOR", n, &data);
        assert_file_content(&srv.root().join(n), &data, &format!("STOR {n:?} on disk"));
        let got = c.retr(n, DataMode::Pasv);
        assert_bytes_eq(&data, &got, &format!("RETR {n:?}"));
    }
    let listed = nlst(&mut c);
    for n in names {
        assert!(
            listed.iter().any(|l| l == n || l == &format!("/{n}")),
            "NLST lacks {n:?}: {listed:?}"
        );
    }
    let list = c.listing("LIST", DataMode::Pasv);
    for n in names {
        assert!(
            list.lines()
                .any(|l| l.trim_end_matches('\r').ends_with(&format!(" {n}"))),
            "LIST lacks {n:?}: {list:?}"
        );
    }
    for n in names {
        c.cmd_expect(&format!("DELE {n}"), 250);
        assert!(!srv.root().join(n).exists(), "DELE {n:?} did not delete");
    }
    assert!(
        dir_names(srv.root()).is_empty(),
        "left: {:?}",
        dir_names(srv.root())
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn cr_lf_in_names_cannot_inject_replies() {
    let srv = Server::start();
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.set_timeout(Duration::from_millis(1500));
    let payloads: [&[u8]; 5] = [
        b"STOR a\rb\r\n",
        b"STOR x\r200 injected\r\n",
        b"MKD d\r257 \"/injected\" created\r\n",
        b"RNFR n\r350 fake\r\n",
        b"DELE q\r\x00\r\n",
    ];
    for p in payloads {
        let shown = String::from_utf8_lossy(p).into_owned();
        let needs_data = p.starts_with(b"STOR");
        let mut data_conn = None;
        if needs_data {
            let a = c.pasv();
            data_conn = Some(TcpStream::connect(a).unwrap());
        }
        c.send_raw(p).unwrap();
        let mut replies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if Instant::now() > deadline {
                break;
            }
            match c.try_read_reply() {
                Ok(r) => {
                    let prelim = r.is_prelim();
                    replies.push(r);
                    if prelim {
                        if let Some(mut d) = data_conn.take() {
                            let _ = d.write_all(b"payload");
                            drop(d);
                        }
                        continue;
                    }
                    break;
                }
                Err(ReadError::Timeout) => break,
                Err(e) => c.fail(&format!("after {shown:?}: {e}")),
            }
        }
        drop(data_conn);
        // Nothing else may follow (an injected second reply).
        match c.try_read_reply() {
            Err(ReadError::Timeout) => {}
            Ok(r) => c.fail(&format!("after {shown:?}: an extra reply arrived: {r}")),
            Err(e) => c.fail(&format!("after {shown:?}: {e}")),
        }
        assert!(
            !replies.is_empty(),
            "no reply to {shown:?}\n{}",
            c.transcript()
        );
        for r in &replies {
            assert_eq!(r.lines.len(), 1, "reply to {shown:?} must be one line: {r}");
        }
        eprintln!(
            "{shown:?} -> {:?}",
            replies.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
    }
    c.set_timeout(CTRL_TIMEOUT);
    c.cmd_expect("NOOP", 200);
    for n in dir_names(srv.root()) {
        assert!(
            !n.contains('\n') && !n.contains('\r'),
            "a name with CR/LF was created: {n:?}"
        );
    }
    // A name containing LF: the LF ends the command; no file with LF in its name.
    c.set_timeout(Duration::from_millis(1500));
    c.send_raw(b"MKD e\nXYZZY\r\n").unwrap();
    let mut n = 0;
    loop {
        match c.try_read_reply() {
            Ok(r) => {
                assert_eq!(r.lines.len(), 1, "reply to MKD e<LF>XYZZY: {r}");
                n += 1;
                if n > 4 {
                    c.fail("too many replies");
                }
            }
            Err(ReadError::Timeout) => break,
            Err(e) => c.fail(&format!("MKD e<LF>XYZZY: {e}")),
        }
    }
    c.set_timeout(CTRL_TIMEOUT);
    c.cmd_expect("NOOP", 200);
    for n in dir_names(srv.root()) {
        assert!(
            !n.contains('\n') && !n.contains('\r'),
            "a name with CR/LF was created: {n:?}"
        );
    }
    c.cmd_expect("QUIT", 221);
}
