//! Inline checksums (issue 11): uploads with `--checksums` store their digests with the file
//! (`user.ringest.<algo>`), and CKSM (GridFTP), HASH (draft-bryan-ftpext-hash) and
//! XCRC/XMD5/XSHA* (ProFTPD) answer with what `sha256sum`, `md5sum` and Python's hashlib/zlib say
//! of the file on disk: from the stored value while it fits the file, by reading the file (and
//! saying so in the log) when it does not. `globus-url-copy -verify-checksum` passes, and a stored
//! file corrupted on disk is never answered with its old digest.

mod common;

use common::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SIZES: [u64; 4] = [0, 1, MIB + 1, 3 * MIB + 7];

fn server(checksums: &str) -> Server {
    Server::start_with(ServerOpts {
        extra_args: vec![
            "--tls".into(),
            "off".into(),
            "--checksums".into(),
            checksums.into(),
        ],
        ..ServerOpts::default()
    })
}

/// `sha256sum`/`md5sum`/... of a file: the first word of its output.
fn sum_tool(tool: &str, path: &Path) -> String {
    require_tool(tool);
    let out = run_cmd(Command::new(tool).arg(path), Duration::from_secs(60));
    out.assert_success(tool);
    out.stdout_str()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Python's view: hashlib for the hashes, zlib for CRC-32 and Adler-32 (8 hex digits).
fn python_digest(algo: &str, path: &Path) -> String {
    require_tool("python3");
    let script = r#"
import hashlib, sys, zlib
algo, path = sys.argv[1], sys.argv[2]
data = open(path, 'rb').read()
if algo == 'crc32':
    print('%08x' % (zlib.crc32(data) & 0xffffffff))
elif algo == 'adler32':
    print('%08x' % (zlib.adler32(data) & 0xffffffff))
else:
    print(hashlib.new(algo, data).hexdigest())
"#;
    let out = run_cmd(
        Command::new("python3").args(["-c", script, algo]).arg(path),
        Duration::from_secs(60),
    );
    out.assert_success("python3 digest");
    out.stdout_str().trim().to_string()
}

/// CRC-32C computed bit by bit (reflected polynomial 0x82F63B78): independent of the table and
/// hardware implementations the server uses.
fn crc32c_reference(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    let mut crc: u32 = !0;
    for b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    format!("{:08x}", !crc)
}

/// The stored value of `user.ringest.<algo>`, if any.
fn stored_attr(path: &Path, algo: &str) -> Option<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(format!("user.ringest.{algo}")).unwrap();
    let mut buf = [0u8; 512];
    // SAFETY: NUL-terminated path and name; `buf` writable for its length during the call.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Lines of the server's log that say a checksum of `name` was computed by reading the file.
fn reads_logged(srv: &Server, name: &str) -> usize {
    srv.stderr_tail(1 << 20)
        .lines()
        .filter(|l| l.contains("checksum computed by reading the file") && l.contains(name))
        .count()
}

/// The text of a single-line reply, after its code.
fn body(r: &Reply) -> String {
    r.lines[0].get(4..).unwrap_or_default().trim().to_string()
}

/// The hex of a `213 <hex>` or `250 <hex>` reply.
fn hex_of(r: &Reply, code: u16) -> String {
    assert_eq!(r.code, code, "{r}");
    body(r)
}

fn curl_upload(srv: &Server, local: &Path, name: &str) {
    let mut c = curl(60);
    c.arg("-T").arg(local).arg(srv.url(name));
    run_cmd(&mut c, Duration::from_secs(90)).assert_success("curl -T");
}

fn check_every_command(srv: &Server, ftp: &mut Ftp, name: &str, on_disk: &Path) {
    let sha256 = sum_tool("sha256sum", on_disk);
    let md5 = sum_tool("md5sum", on_disk);
    let path = format!("/{name}");
    let cksm =
        |ftp: &mut Ftp, algo: &str| hex_of(&ftp.cmd(&format!("CKSM {algo} 0 -1 {path}")), 213);
    assert_eq!(cksm(ftp, "SHA256"), sha256, "CKSM SHA256 {name}");
    assert_eq!(cksm(ftp, "MD5"), md5, "CKSM MD5 {name}");
    assert_eq!(
        cksm(ftp, "ADLER32"),
        python_digest("adler32", on_disk),
        "CKSM ADLER32 {name}"
    );
    assert_eq!(
        cksm(ftp, "CRC32C"),
        crc32c_reference(on_disk),
        "CKSM CRC32C {name}"
    );
    assert_eq!(
        cksm(ftp, "SHA1"),
        sum_tool("sha1sum", on_disk),
        "CKSM SHA1 {name}"
    );
    assert_eq!(
        cksm(ftp, "SHA512"),
        sum_tool("sha512sum", on_disk),
        "CKSM SHA512 {name}"
    );
    let size = std::fs::metadata(on_disk).unwrap().len();
    for (opt, py) in [
        ("SHA-256", "sha256"),
        ("SHA-1", "sha1"),
        ("SHA-512", "sha512"),
        ("MD5", "md5"),
        ("CRC32", "crc32"),
    ] {
        let r = ftp.cmd(&format!("OPTS HASH {opt}"));
        assert_eq!((r.code, body(&r)), (200, opt.to_string()));
        let r = ftp.cmd(&format!("HASH {path}"));
        assert_eq!(r.code, 213, "{r}");
        assert_eq!(
            body(&r),
            format!(
                "{opt} 0-{} {} {path}",
                size.saturating_sub(1),
                python_digest(py, on_disk)
            ),
            "HASH {opt} {name}"
        );
    }
    assert_eq!(hex_of(&ftp.cmd(&format!("XSHA256 {path}")), 250), sha256);
    assert_eq!(hex_of(&ftp.cmd(&format!("XMD5 {path}")), 250), md5);
    assert_eq!(
        hex_of(&ftp.cmd(&format!("XCRC {path}")), 250),
        python_digest("crc32", on_disk)
    );
    let _ = srv;
}

#[test]
fn uploads_store_their_digests_and_every_command_matches_the_file_on_disk() {
    let srv = server("sha256,crc32c");
    let mut ftp = srv.login();
    for (i, size) in SIZES.into_iter().enumerate() {
        let name = format!("c{i}.bin");
        let local = make_test_file(&srv.scratch(), &name, size, 11 + i as u64);
        curl_upload(&srv, &local, &name);
        let on_disk = srv.root().join(&name);
        assert_same_file(&local, &on_disk, "curl upload");
        // Stored inline with the file, tied to its size.
        for algo in ["sha256", "crc32c"] {
            let v = stored_attr(&on_disk, algo).unwrap_or_else(|| {
                panic!("no user.ringest.{algo} on {name} after an inline upload")
            });
            assert!(v.starts_with(&format!("v1 {size} ")), "{v}");
        }
        assert_eq!(stored_attr(&on_disk, "md5"), None, "md5 was not configured");
        // The configured algorithms are answered without reading the file.
        let sha = hex_of(&ftp.cmd(&format!("CKSM SHA256 0 -1 {name}")), 213);
        let crc = hex_of(&ftp.cmd(&format!("CKSM CRC32C 0 -1 {name}")), 213);
        assert_eq!(sha, sum_tool("sha256sum", &on_disk));
        assert_eq!(crc, crc32c_reference(&on_disk));
        assert_eq!(reads_logged(&srv, &name), 0, "{}", srv.stderr_tail(4000));
        // Any other algorithm is computed by reading, and the log says so.
        check_every_command(&srv, &mut ftp, &name, &on_disk);
        assert!(reads_logged(&srv, &name) > 0, "{}", srv.stderr_tail(4000));
    }
    // Uploads through the session's own STOR over each kind of data connection, too.
    for (i, mode) in DataMode::ALL.into_iter().enumerate() {
        let name = format!("m{i}.bin");
        let data = test_bytes((MIB + 13 * i as u64) as usize, 40 + i as u64);
        ftp.cmd_expect("TYPE I", 200);
        ftp.stor(&name, &data, mode);
        let on_disk = srv.root().join(&name);
        assert!(stored_attr(&on_disk, "sha256").is_some(), "{mode:?}");
        let sha = hex_of(&ftp.cmd(&format!("CKSM SHA256 0 -1 {name}")), 213);
        assert_eq!(sha, sum_tool("sha256sum", &on_disk), "{mode:?}");
    }
}

#[test]
fn ranges_errors_and_partial_checksums() {
    let srv = server("sha256");
    let local = make_test_file(&srv.scratch(), "r.bin", 100_000, 5);
    curl_upload(&srv, &local, "r.bin");
    let mut ftp = srv.login();
    // A part of the file is always read: compare with Python over the same bytes.
    let part = srv.scratch().join("part.bin");
    let data = std::fs::read(&local).unwrap();
    std::fs::write(&part, &data[1000..1000 + 5000]).unwrap();
    let r = ftp.cmd("CKSM SHA256 1000 5000 r.bin");
    assert_eq!(hex_of(&r, 213), python_digest("sha256", &part));
    std::fs::write(&part, &data[99_000..]).unwrap();
    let r = ftp.cmd("CKSM MD5 99000 -1 r.bin");
    assert_eq!(hex_of(&r, 213), python_digest("md5", &part));
    assert_eq!(ftp.cmd("CKSM WHIRLPOOL 0 -1 r.bin").code, 504);
    assert_eq!(ftp.cmd("CKSM SHA256 0 r.bin").code, 501);
    assert_eq!(ftp.cmd("CKSM SHA256 0 -1 missing.bin").code, 550);
    assert_eq!(ftp.cmd("HASH missing.bin").code, 550);
    assert_eq!(ftp.cmd("XSHA256 missing.bin").code, 550);
    ftp.cmd_expect("MKD d", 257);
    assert_eq!(ftp.cmd("CKSM SHA256 0 -1 d").code, 550);
    assert_eq!(ftp.cmd("OPTS HASH SHA-3").code, 501);
    let feat = ftp.cmd("FEAT");
    let text = feat.text();
    assert!(text.contains("CKSM MD5:10;"), "{text}");
    assert!(text.contains("HASH SHA-1;SHA-256*;"), "{text}");
    // Not logged in: 530.
    let mut anon = Ftp::connect(srv.addr);
    assert_eq!(anon.cmd("CKSM SHA256 0 -1 r.bin").code, 530);
    assert_eq!(anon.cmd("XSHA256 r.bin").code, 530);
}

#[test]
fn a_file_changed_on_disk_is_never_answered_with_its_old_digest() {
    let srv = server("sha256,md5");
    let local = make_test_file(&srv.scratch(), "x.bin", 2 * MIB + 5, 77);
    curl_upload(&srv, &local, "x.bin");
    let on_disk = srv.root().join("x.bin");
    let original = sum_tool("sha256sum", &local);
    let mut ftp = srv.login();
    assert_eq!(hex_of(&ftp.cmd("CKSM SHA256 0 -1 x.bin"), 213), original);
    assert_eq!(reads_logged(&srv, "x.bin"), 0);
    // Corrupt a few bytes in the middle, size unchanged (what a bad disk or a stray writer does).
    std::thread::sleep(Duration::from_millis(20));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&on_disk)
            .unwrap();
        f.write_all_at(b"CORRUPTED", MIB).unwrap();
    }
    let now = sum_tool("sha256sum", &on_disk);
    assert_ne!(now, original);
    assert_eq!(hex_of(&ftp.cmd("CKSM SHA256 0 -1 x.bin"), 213), now);
    assert_eq!(hex_of(&ftp.cmd("XSHA256 x.bin"), 250), now);
    assert_eq!(
        hex_of(&ftp.cmd("CKSM MD5 0 -1 x.bin"), 213),
        sum_tool("md5sum", &on_disk)
    );
    assert!(
        reads_logged(&srv, "x.bin") >= 1,
        "{}",
        srv.stderr_tail(4000)
    );
    // The value read is stored for the next time: fresh again, no further read.
    let reads = reads_logged(&srv, "x.bin");
    assert_eq!(hex_of(&ftp.cmd("CKSM SHA256 0 -1 x.bin"), 213), now);
    assert_eq!(reads_logged(&srv, "x.bin"), reads);
    // A file placed directly on disk (no stored value) is hashed by reading, sizes 0 and 1 too.
    for (i, size) in [0u64, 1, MIB + 1].into_iter().enumerate() {
        let name = format!("placed{i}.bin");
        make_test_file(srv.root(), &name, size, 300 + i as u64);
        let p = srv.root().join(&name);
        assert_eq!(stored_attr(&p, "sha256"), None);
        assert_eq!(
            hex_of(&ftp.cmd(&format!("CKSM SHA256 0 -1 {name}")), 213),
            sum_tool("sha256sum", &p)
        );
        assert_eq!(reads_logged(&srv, &name), 1, "{}", srv.stderr_tail(4000));
        assert!(stored_attr(&p, "sha256").is_some());
    }
    // A garbled stored value is not trusted either.
    let p = CString::new(on_disk.as_os_str().as_bytes()).unwrap();
    let name = CString::new("user.ringest.sha256").unwrap();
    let junk = b"v1 nonsense";
    // SAFETY: NUL-terminated path and name; `junk` readable for its length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            name.as_ptr(),
            junk.as_ptr().cast(),
            junk.len(),
            0,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(hex_of(&ftp.cmd("CKSM SHA256 0 -1 x.bin"), 213), now);
}

#[test]
fn globus_url_copy_verify_checksum_passes_and_catches_a_corrupted_file() {
    // globus-url-copy verifies with MD5 by default.
    let srv = server("md5,sha256");
    for (i, (args, size)) in [
        (&["-verify-checksum"][..], 0u64),
        (&["-verify-checksum"][..], 1),
        (&["-verify-checksum"][..], MIB + 1),
        (&["-verify-checksum", "-fast", "-p", "4"][..], 9 * MIB + 3),
        (&["-verify-checksum", "-p", "2"][..], 3 * MIB),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("g{i}.bin");
        let local = make_test_file(&srv.scratch(), &name, size, 500 + i as u64);
        let src = format!("file://{}", local.display());
        guc(args, &src, &guc_url(&srv, &name)).assert_success(&format!("globus-url-copy {args:?}"));
        let on_disk = srv.root().join(&name);
        assert_same_file(&local, &on_disk, "globus-url-copy upload");
        // MODE E blocks over parallel connections went through the in-order gate.
        let v =
            stored_attr(&on_disk, "md5").unwrap_or_else(|| panic!("no stored md5 for {args:?}"));
        assert!(v.ends_with(&sum_tool("md5sum", &local)), "{v}");
        assert_eq!(reads_logged(&srv, &name), 0, "{}", srv.stderr_tail(4000));
    }
    // Corrupt the stored file: the check -verify-checksum makes after an upload (its source's MD5
    // against the server's CKSM MD5) now fails, since the old digest is never served...
    let name = "g2.bin";
    let on_disk = srv.root().join(name);
    let source_md5 = sum_tool("md5sum", &srv.scratch().join(name));
    std::thread::sleep(Duration::from_millis(20));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&on_disk)
            .unwrap();
        f.write_all_at(&[0xFF; 16], 4096).unwrap();
    }
    let mut ftp = srv.login();
    let served = hex_of(&ftp.cmd(&format!("CKSM MD5 0 -1 /{name}")), 213);
    assert_ne!(
        served, source_md5,
        "a stale MD5 was served for a corrupted file"
    );
    assert_eq!(served, sum_tool("md5sum", &on_disk));
    // ...and a download verified against the server's CKSM gets the corrupted bytes with their
    // own digest (with the old digest served it would fail), which differ from the source's.
    let down = srv.scratch().join("down.bin");
    guc(
        &["-verify-checksum"],
        &guc_url(&srv, name),
        &format!("file://{}", down.display()),
    )
    .assert_success("globus-url-copy -verify-checksum download of the corrupted file");
    assert_eq!(sum_tool("md5sum", &down), served);
    assert_ne!(sum_tool("md5sum", &down), source_md5);
}

#[test]
fn bit_rot_under_an_unchanged_mtime_makes_verify_checksum_fail() {
    // The digest stored at ingest is the file as it arrived. Bytes that change later without
    // the file's size or mtime changing (bit rot, a bad disk, a tool that restores times) are
    // caught: CKSM answers the stored digest, which no longer matches what is downloaded.
    let srv = server("md5");
    let name = "rot.bin";
    let local = make_test_file(&srv.scratch(), name, 2 * MIB + 9, 77);
    let src = format!("file://{}", local.display());
    guc(
        &["-verify-checksum", "-fast", "-p", "2"],
        &src,
        &guc_url(&srv, name),
    )
    .assert_success("globus-url-copy -verify-checksum upload");
    let on_disk = srv.root().join(name);
    let mtime = std::fs::metadata(&on_disk).unwrap().modified().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&on_disk)
            .unwrap();
        f.write_all_at(&[0x5A; 8], MIB).unwrap();
        f.set_times(std::fs::FileTimes::new().set_modified(mtime))
            .unwrap();
    }
    assert_eq!(
        std::fs::metadata(&on_disk).unwrap().modified().unwrap(),
        mtime
    );
    let down = srv.scratch().join("rot.down");
    let out = guc(
        &["-verify-checksum"],
        &guc_url(&srv, name),
        &format!("file://{}", down.display()),
    );
    assert!(
        !out.success(),
        "a download of a rotten file passed -verify-checksum:\n{}",
        out.describe()
    );
    assert!(
        out.stderr_str().to_lowercase().contains("checksum"),
        "{}",
        out.describe()
    );
    // The server answered from the stored value: it did not read the file.
    assert_eq!(reads_logged(&srv, name), 0, "{}", srv.stderr_tail(4000));
}

/// Every file under `dir` that has a stored SHA-256 has the one `sha256sum` computes; returns
/// how many had one.
fn stored_digests_match(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += stored_digests_match(&p);
            continue;
        }
        if let Some(v) = stored_attr(&p, "sha256") {
            let size = std::fs::metadata(&p).unwrap().len();
            assert_eq!(
                v.split(' ').collect::<Vec<_>>()[..2],
                ["v1", &size.to_string()]
            );
            assert!(
                v.ends_with(&sum_tool("sha256sum", &p)),
                "{}: stored {v}",
                p.display()
            );
            n += 1;
        }
    }
    n
}

/// The inline digest is right on every receive path: ring writes with FSETXATTR through the ring,
/// O_DIRECT writes, the copying path of a ring without registered buffers, TLS decrypted in
/// place, and MODE B in clear.
#[test]
fn every_receive_path_stores_the_right_digest() {
    for extra in [
        &["--fs-ops", "ring"][..],
        &["--direct-io", "on"][..],
        &["--buffers", "0"][..],
        &["--data-path", "splice"][..],
    ] {
        let mut args: Vec<String> = vec![
            "--tls".into(),
            "off".into(),
            "--checksums".into(),
            "sha256".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let srv = Server::start_with(ServerOpts {
            extra_args: args,
            ..ServerOpts::default()
        });
        for (i, size) in SIZES.into_iter().enumerate() {
            let name = format!("p{i}.bin");
            let local = make_test_file(&srv.scratch(), &name, size, 700 + i as u64);
            curl_upload(&srv, &local, &name);
            assert_same_file(&local, &srv.root().join(&name), "upload");
        }
        assert_eq!(stored_digests_match(srv.root()), SIZES.len(), "{extra:?}");
    }
    // FTPS: curl with a protected data connection (records decrypted in place).
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--checksums".into(), "sha256".into()],
        ..ServerOpts::default()
    });
    let cert = {
        let line = startup_line(&srv, "ringest: TLS certificate ");
        std::path::PathBuf::from(line.split('"').nth(1).unwrap())
    };
    for (i, size) in SIZES.into_iter().enumerate() {
        let name = format!("t{i}.bin");
        let local = make_test_file(&srv.scratch(), &name, size, 800 + i as u64);
        let mut c = curl(60);
        c.args(["--ssl-reqd", "--cacert"])
            .arg(&cert)
            .arg("-T")
            .arg(&local)
            .arg(srv.url(&name));
        run_cmd(&mut c, Duration::from_secs(90)).assert_success("curl --ssl-reqd -T");
        assert_same_file(&local, &srv.root().join(&name), "FTPS upload");
    }
    assert_eq!(stored_digests_match(srv.root()), SIZES.len(), "FTPS");
    // MODE B (several files over one kept connection, restart markers).
    let srv = server("sha256");
    run_modeb_edge(&srv);
    assert!(
        stored_digests_match(srv.root()) > 0,
        "MODE B stored nothing"
    );
}

/// MFMT and SITE UTIME change no byte: the stored digests follow the new time, so a mirror that
/// sets times after each upload keeps its checksums answered without a read.
#[test]
fn setting_the_time_carries_the_stored_digests_over() {
    let srv = server("sha256");
    let local = make_test_file(&srv.scratch(), "t.bin", MIB + 1, 9);
    curl_upload(&srv, &local, "t.bin");
    let on_disk = srv.root().join("t.bin");
    let before = stored_attr(&on_disk, "sha256").unwrap();
    let mut ftp = srv.login();
    ftp.cmd_expect("MFMT 20200102030405 t.bin", 213);
    ftp.cmd_expect("SITE UTIME 20210102030405 t.bin", 200);
    let after = stored_attr(&on_disk, "sha256").unwrap();
    assert_ne!(before, after, "the stored value names the new mtime");
    assert_eq!(
        hex_of(&ftp.cmd("CKSM SHA256 0 -1 t.bin"), 213),
        sum_tool("sha256sum", &on_disk)
    );
    assert_eq!(reads_logged(&srv, "t.bin"), 0, "{}", srv.stderr_tail(4000));
}

/// Uploads that cannot be hashed inline (APPE, REST + STOR, TYPE A) store nothing new, and the
/// value stored before them no longer fits the file: every answer is the file's own digest.
#[test]
fn appended_resumed_and_ascii_uploads_are_hashed_by_reading() {
    let srv = server("sha256");
    let mut ftp = srv.login();
    ftp.cmd_expect("TYPE I", 200);
    let first = test_bytes(100_000, 1);
    ftp.stor("a.bin", &first, DataMode::Pasv);
    let on_disk = srv.root().join("a.bin");
    assert!(stored_attr(&on_disk, "sha256").is_some());
    let more = test_bytes(5_000, 2);
    let a = ftp.try_upload("APPE", "a.bin", &more, DataMode::Pasv);
    assert_eq!(a.replies.last().unwrap().code, 226, "{:?}", a.replies);
    assert_eq!(
        hex_of(&ftp.cmd("CKSM SHA256 0 -1 a.bin"), 213),
        sum_tool("sha256sum", &on_disk)
    );
    assert_eq!(reads_logged(&srv, "a.bin"), 1, "{}", srv.stderr_tail(4000));
    // REST + STOR continues the file in place from 50,000.
    ftp.cmd_expect("REST 50000", 350);
    let tail = test_bytes(70_000, 3);
    ftp.stor("a.bin", &tail, DataMode::Pasv);
    assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), 120_000);
    assert_eq!(
        hex_of(&ftp.cmd("XSHA256 a.bin"), 250),
        sum_tool("sha256sum", &on_disk)
    );
    assert_eq!(reads_logged(&srv, "a.bin"), 2, "{}", srv.stderr_tail(4000));
    // TYPE A: converted in transit, not hashed inline.
    ftp.cmd_expect("TYPE A", 200);
    ftp.stor("t.txt", b"one\r\ntwo\r\n", DataMode::Pasv);
    let txt = srv.root().join("t.txt");
    assert_eq!(std::fs::read(&txt).unwrap(), b"one\ntwo\n");
    assert_eq!(stored_attr(&txt, "sha256"), None);
    assert_eq!(
        hex_of(&ftp.cmd("CKSM SHA256 0 -1 t.txt"), 213),
        sum_tool("sha256sum", &txt)
    );
}

/// Uploads with inline checksums leave splice, but past `direct_io_threshold` they still switch
/// to O_DIRECT writes (as splice would): byte-exact at odd thresholds, the digest still right,
/// and the direct bytes counted.
#[test]
fn uploads_with_checksums_still_switch_to_direct_io() {
    for threshold in [65_537u64, 1_000_000] {
        let srv = Server::start_with(ServerOpts {
            extra_args: vec![
                "--tls".into(),
                "off".into(),
                "--checksums".into(),
                "sha256,crc32c".into(),
                "--direct-io-threshold".into(),
                threshold.to_string(),
                "--metrics-listen".into(),
                "127.0.0.1:0".into(),
            ],
            ..ServerOpts::default()
        });
        for (i, size) in [threshold - 1, threshold + 1, 3 * MIB + 7, 9 * MIB + 4095]
            .into_iter()
            .enumerate()
        {
            let name = format!("d{i}.bin");
            let local = make_test_file(&srv.scratch(), &name, size, 900 + i as u64);
            curl_upload(&srv, &local, &name);
            assert_same_file(
                &local,
                &srv.root().join(&name),
                "upload switching to direct I/O",
            );
        }
        assert_eq!(stored_digests_match(srv.root()), 4, "threshold {threshold}");
        let (_, body) = http_get(&metrics_addr(&srv.stdout_lines), "/metrics");
        let direct = metric(&body, "ringest_direct_io_bytes_total").expect("direct I/O metric");
        // What the multishot recv had already taken when the threshold passed is written
        // buffered; the rest of the larger files goes direct.
        assert!(direct > MIB as f64, "direct bytes {direct}");
    }
}

/// APPE of a new file writes the visible file itself, which another session could write at the
/// same time: not hashed inline, answered by reading.
#[test]
fn appending_to_a_new_file_is_not_hashed_inline() {
    let srv = server("sha256");
    let mut ftp = srv.login();
    ftp.cmd_expect("TYPE I", 200);
    let data = test_bytes(10_000, 4);
    let a = ftp.try_upload("APPE", "new.bin", &data, DataMode::Pasv);
    assert_eq!(a.replies.last().unwrap().code, 226, "{:?}", a.replies);
    let on_disk = srv.root().join("new.bin");
    assert_eq!(stored_attr(&on_disk, "sha256"), None);
    assert_eq!(
        hex_of(&ftp.cmd("CKSM SHA256 0 -1 new.bin"), 213),
        sum_tool("sha256sum", &on_disk)
    );
    assert_eq!(reads_logged(&srv, "new.bin"), 1);
}
