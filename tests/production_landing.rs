//! Landing of uploads: invisible until complete, nothing left behind by an aborted client, a
//! `kill -9`ed server (crash leftovers swept at the next start), `--overwrite`, full disk.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

fn nlst(c: &mut Ftp) -> Vec<String> {
    c.listing("NLST", DataMode::Pasv)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn upload_is_invisible_until_complete() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let data = test_bytes(4 * MIB as usize, 21);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let mut d = c.begin_transfer("STOR landing.bin");
        d.write_all(&data[..MIB as usize]).unwrap();
        // Wait until the server has written something (its hidden file grows).
        let grew = wait_until(
            || {
                ringest_temp_names(srv.root()).iter().any(|n| {
                    fs::metadata(srv.root().join(n))
                        .map(|m| m.len() > 0)
                        .unwrap_or(false)
                })
            },
            Duration::from_secs(5),
        );
        eprintln!(
            "hidden file has data: {grew}; dir: {:?}",
            dir_names(srv.root())
        );
        assert!(
            !srv.root().join("landing.bin").exists(),
            "the final name exists on disk during the upload"
        );
        let mut other = srv.login();
        let names = nlst(&mut other);
        assert!(
            !names.iter().any(|n| n.contains("landing")),
            "NLST during the upload: {names:?}"
        );
        let list = other.listing("LIST", DataMode::Pasv);
        assert!(
            !list.contains(".ringest-") && !list.contains("landing"),
            "LIST during the upload: {list:?}"
        );
        let r = other.cmd("SIZE landing.bin");
        assert_eq!(
            r.code, 550,
            "SIZE of the file being uploaded: expected 550, got {r}"
        );
        d.write_all(&data[MIB as usize..]).unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        drop(d);
        let r = c.read_reply();
        assert_eq!(r.code, 226, "end of upload: {r}\n{}", c.transcript());
        assert_file_content(&srv.root().join("landing.bin"), &data, "landed file");
        assert!(
            ringest_temp_names(srv.root()).is_empty(),
            "temp files after 226: {:?}",
            dir_names(srv.root())
        );
        let names = nlst(&mut other);
        assert!(
            names.iter().any(|n| n == "landing.bin"),
            "NLST after 226: {names:?}"
        );
        other.cmd_expect("QUIT", 221);
        c.cmd_expect("QUIT", 221);
    });
}

#[test]
fn killed_client_mid_upload_leaves_nothing() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let data = test_bytes(2 * MIB as usize, 22);
        // 1: RST on both connections.
        {
            let mut c = srv.login();
            c.cmd_expect("TYPE I", 200);
            let mut d = c.begin_transfer("STOR killed1.bin");
            d.write_all(&data[..MIB as usize]).unwrap();
            thread::sleep(Duration::from_millis(200));
            set_linger0(&d);
            set_linger0(c.stream());
            drop(d);
            drop(c);
        }
        // 2: FIN on control first, data still open, then RST on data.
        {
            let mut c = srv.login();
            c.cmd_expect("TYPE I", 200);
            let mut d = c.begin_transfer("STOR killed2.bin");
            d.write_all(&data[..MIB as usize]).unwrap();
            let _ = c.stream().shutdown(Shutdown::Both);
            drop(c);
            thread::sleep(Duration::from_millis(200));
            let _ = d.write_all(&data[MIB as usize..MIB as usize + 1000]);
            set_linger0(&d);
            drop(d);
        }
        let clean = wait_until(|| dir_names(srv.root()).is_empty(), Duration::from_secs(5));
        assert!(
            clean,
            "5 s after the client vanished mid-upload the root holds {:?} (expected nothing: \
             no final name, no .ringest-* temp file)",
            dir_names(srv.root())
        );
        srv.assert_serves_new_session("after-killed-client");
    });
}

#[test]
fn kill9_mid_upload_then_restart_sweeps_leftovers() {
    let base = tempfile::Builder::new()
        .prefix("ringest-k9-")
        .tempdir()
        .unwrap();
    let root = base.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("keep.txt"), b"keep me").unwrap();
    let log = base.path().join("stderr.log");
    let mut srv = ServerProc::start(&proc_args(&root, &[]), &[], &log);
    let data = test_bytes(3 * MIB as usize, 23);
    let mut c = srv.login("u", "p");
    c.cmd_expect("TYPE I", 200);
    let mut d = c.begin_transfer("STOR crash.bin");
    d.write_all(&data[..2 * MIB as usize]).unwrap();
    // Let the server write part of it (into a hidden file or an anonymous O_TMPFILE).
    thread::sleep(Duration::from_millis(500));
    eprintln!("before kill -9: {:?}", dir_names(&root));
    srv.kill9();
    drop(d);
    drop(c);
    eprintln!("after kill -9: {:?}", dir_names(&root));
    assert!(
        !root.join("crash.bin").exists(),
        "final name exists after kill -9 mid-upload"
    );

    let srv2 = ServerProc::start(&proc_args(&root, &[]), &[], &log);
    let swept = wait_until(
        || ringest_temp_names(&root).is_empty(),
        Duration::from_secs(5),
    );
    assert!(
        swept,
        "temp files not swept 5 s after restart: {:?}",
        dir_names(&root)
    );
    assert_eq!(
        dir_names(&root),
        vec!["keep.txt".to_string()],
        "root after restart"
    );
    assert_file_content(&root.join("keep.txt"), b"keep me", "unrelated file");
    // The restarted server works.
    let mut c = srv2.login("u", "p");
    c.cmd_expect("TYPE I", 200);
    c.stor("crash.bin", &data, DataMode::Pasv);
    assert_file_content(&root.join("crash.bin"), &data, "upload after restart");
    c.cmd_expect("QUIT", 221);
}

#[test]
fn restart_sweeps_leftovers_in_subdirectories() {
    let base = tempfile::Builder::new()
        .prefix("ringest-sw-")
        .tempdir()
        .unwrap();
    let root = base.path().join("root");
    let deep = root.join("sub/deeper");
    fs::create_dir_all(&deep).unwrap();
    let leftovers: Vec<PathBuf> = vec![
        root.join(".ringest-0123456789abcdef.part"),
        root.join("sub/.ringest-fedcba9876543210.part"),
        deep.join(".ringest-00000000deadbeef.part"),
    ];
    for p in &leftovers {
        fs::write(p, b"partial junk").unwrap();
    }
    fs::write(deep.join("real.bin"), b"real").unwrap();
    fs::write(root.join(".ringest-notes.txt"), b"not ours: wrong shape").unwrap();
    let log = base.path().join("stderr.log");
    let srv = ServerProc::start(&proc_args(&root, &[]), &[], &log);
    let swept = wait_until(
        || leftovers.iter().all(|p| !p.exists()),
        Duration::from_secs(5),
    );
    let remaining: Vec<_> = leftovers.iter().filter(|p| p.exists()).collect();
    assert!(
        swept,
        "crash leftovers not swept 5 s after start: {remaining:?}"
    );
    assert_file_content(
        &deep.join("real.bin"),
        b"real",
        "regular file in a subdirectory",
    );
    assert!(
        root.join(".ringest-notes.txt").exists(),
        "a file not matching .ringest-<hex>.part was removed"
    );
    drop(srv);
}

#[test]
fn overwrite_refuse_keeps_old_content() {
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--overwrite".into(), "refuse".into()],
        ..ServerOpts::default()
    });
    let mut c = srv.login();
    c.cmd_expect("TYPE I", 200);
    c.stor("once.txt", b"original", DataMode::Pasv);
    let a = c.try_stor("once.txt", b"replacement!", DataMode::Pasv);
    assert_eq!(
        a.final_code(),
        550,
        "STOR onto an existing name with --overwrite refuse: expected 550, got {:?}",
        a.replies
    );
    assert_file_content(
        &srv.root().join("once.txt"),
        b"original",
        "refused overwrite",
    );
    assert!(
        wait_until(
            || ringest_temp_names(srv.root()).is_empty(),
            Duration::from_secs(3)
        ),
        "temp files left after a refused overwrite: {:?}",
        dir_names(srv.root())
    );
    // A new name is fine.
    c.stor("twice.txt", b"new", DataMode::Pasv);
    assert_file_content(
        &srv.root().join("twice.txt"),
        b"new",
        "new file with refuse",
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn overwrite_replace_is_atomic() {
    for_each_data_path(|dp| {
        let srv = Server::start_dp(dp);
        let old = test_bytes(MIB as usize + 5, 24);
        let new = test_bytes(3 * MIB as usize, 25);
        fs::write(srv.root().join("v.bin"), &old).unwrap();
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        let mut d = c.begin_transfer("STOR v.bin");
        d.write_all(&new[..2 * MIB as usize]).unwrap();
        thread::sleep(Duration::from_millis(200));
        // A reader sees the whole old file during the upload.
        assert_file_content(
            &srv.root().join("v.bin"),
            &old,
            "file on disk during its replacement",
        );
        let mut other = srv.login();
        other.cmd_expect("TYPE I", 200);
        let got = other.retr("v.bin", DataMode::Pasv);
        assert_bytes_eq(&old, &got, "RETR during the replacement");
        d.write_all(&new[2 * MIB as usize..]).unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        drop(d);
        let r = c.read_reply();
        assert_eq!(r.code, 226, "replacing upload: {r}");
        assert_file_content(&srv.root().join("v.bin"), &new, "replaced file");
        assert_eq!(
            dir_names(srv.root()),
            vec!["v.bin".to_string()],
            "root after replace"
        );
        c.cmd_expect("QUIT", 221);
    });
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("ringest-tmpfs-")
            .tempdir()
            .unwrap();
        let r = run_cmd(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path()),
            Duration::from_secs(20),
        );
        if !r.success() {
            return Err(r.describe());
        }
        Ok(Tmpfs { dir, mounted: true })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let r = run_cmd(
                Command::new("umount").arg(self.dir.path()),
                Duration::from_secs(20),
            );
            if !r.success() {
                // Lazy unmount as a fallback (e.g. a process still has it open).
                let _ = run_cmd(
                    Command::new("umount").arg("-l").arg(self.dir.path()),
                    Duration::from_secs(20),
                );
            }
        }
    }
}

/// Sends `data` on the data connection until done or the server closes it; then the
/// final reply.
fn upload_until_refused(c: &mut Ftp, line: &str, data: &[u8]) -> Vec<Reply> {
    let pasv = c.pasv();
    let mut d = std::net::TcpStream::connect(pasv).unwrap();
    c.send(line);
    let first = c.read_reply();
    if !first.is_prelim() {
        return vec![first];
    }
    d.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut off = 0;
    while off < data.len() && start.elapsed() < Duration::from_secs(20) {
        let end = (off + 65536).min(data.len());
        match d.write(&data[off..end]) {
            Ok(n) => off += n,
            Err(_) => break,
        }
    }
    let _ = d.shutdown(Shutdown::Write);
    drop(d);
    let fin = c.read_reply();
    vec![first, fin]
}

#[test]
fn full_disk_gives_452_or_552_and_leaves_nothing() {
    let fs_ = match Tmpfs::mount("2m") {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "!!!!!!!! SKIPPED full_disk_gives_452_or_552_and_leaves_nothing: cannot mount a \
                 tmpfs (needs CAP_SYS_ADMIN):\n{e}"
            );
            return;
        }
    };
    let root = fs_.path().join("root");
    fs::create_dir(&root).unwrap();
    let log_dir = tempfile::Builder::new()
        .prefix("ringest-fd-log-")
        .tempdir()
        .unwrap();
    let big = test_bytes(5 * MIB as usize, 26);
    let mut failures = Vec::new();
    for dp in ["fixed", "splice"] {
        let srv = ServerProc::start(
            &proc_args(&root, &["--data-path", dp]),
            &[],
            &log_dir.path().join(format!("{dp}.log")),
        );
        let mut c = srv.login("u", "p");
        c.cmd_expect("TYPE I", 200);
        let replies = upload_until_refused(&mut c, "STOR big.bin", &big);
        let code = replies.last().unwrap().code;
        if code != 452 && code != 552 {
            failures.push(format!(
                "[{dp}] STOR of 5 MiB onto a 2 MiB tmpfs: expected 452 or 552, got {replies:?}"
            ));
        }
        let clean = wait_until(|| dir_names(&root).is_empty(), Duration::from_secs(5));
        if !clean {
            failures.push(format!(
                "[{dp}] after the failed upload the root holds {:?}",
                dir_names(&root)
            ));
        }
        // With ALLO the failure may come before any data.
        c.cmd_expect("ALLO 5242880", 200);
        let replies = upload_until_refused(&mut c, "STOR allo.bin", &big);
        let code = replies.last().unwrap().code;
        if code != 452 && code != 552 {
            failures.push(format!("[{dp}] ALLO 5242880 + STOR of 5 MiB onto a 2 MiB tmpfs: expected 452 or 552, got {replies:?}"));
        }
        let clean = wait_until(|| dir_names(&root).is_empty(), Duration::from_secs(5));
        if !clean {
            failures.push(format!(
                "[{dp}] after the failed ALLO upload the root holds {:?}",
                dir_names(&root)
            ));
        }
        // Space is free again: a small upload works.
        let small = test_bytes(100_000, 27);
        let a = c.try_stor("small.bin", &small, DataMode::Pasv);
        if !a.succeeded() {
            failures.push(format!(
                "[{dp}] small upload after the full-disk failure: {:?}",
                a.replies
            ));
        } else if fs::read(root.join("small.bin")).ok().as_deref() != Some(&small[..]) {
            failures.push(format!("[{dp}] small.bin has wrong content"));
        }
        let _ = fs::remove_file(root.join("small.bin"));
        c.cmd_expect("QUIT", 221);
        drop(srv);
        for f in dir_names(&root) {
            let _ = fs::remove_file(root.join(f));
        }
    }
    if !failures.is_empty() {
        panic!("full disk:\n{}", failures.join("\n"));
    }
}

/// Uploads into one directory keep it open from file to file (with inline file-system calls);
/// every upload must still land where its path leads at that moment: after the directory is
/// renamed (over FTP, or on disk by someone else) and a new one made under the name, and never
/// through a symlink put in its place, even one to the very directory that was kept.
#[test]
fn uploads_follow_their_directory_name_after_renames_and_symlinks() {
    let srv = Server::start();
    let root = srv.root().to_path_buf();
    let outside = srv.scratch().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let mut c = Ftp::connect(srv.addr);
    c.login(&srv.user, &srv.pass);
    c.cmd_expect("TYPE I", 200);
    c.cmd_expect("MKD d", 257);
    c.stor("d/one", b"one", DataMode::Pasv);
    assert_eq!(fs::read(root.join("d/one")).unwrap(), b"one");
    // `d/NAME` (content NAME) lands in today's `d`, not in `renamed`, where `d` was before.
    let lands_under_the_name = |c: &mut Ftp, name: &str, renamed: &str| {
        c.stor(&format!("d/{name}"), name.as_bytes(), DataMode::Pasv);
        assert_eq!(
            fs::read(root.join("d").join(name)).unwrap(),
            name.as_bytes()
        );
        assert!(
            !root.join(renamed).join(name).exists(),
            "landed in the renamed directory"
        );
    };

    // Renamed over FTP, and a new directory under the old name.
    c.cmd_expect("RNFR d", 350);
    c.cmd_expect("RNTO moved", 250);
    c.cmd_expect("MKD d", 257);
    lands_under_the_name(&mut c, "two", "moved");

    // Renamed on disk by another process, and made again.
    c.stor("d/three", b"three", DataMode::Pasv);
    fs::rename(root.join("d"), root.join("moved2")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    lands_under_the_name(&mut c, "four", "moved2");

    // Removed, then the name made a symlink to a directory outside the root: the jail resolves
    // it inside the root (where nothing of that name exists), so nothing lands outside.
    c.stor("d/five", b"five", DataMode::Pasv);
    fs::remove_file(root.join("d/four")).unwrap();
    fs::remove_file(root.join("d/five")).unwrap();
    fs::remove_dir(root.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("d")).unwrap();
    let a = c.try_stor("d/six", b"six", DataMode::Pasv);
    assert!(
        a.replies.last().is_some_and(|r| r.code >= 400),
        "upload through a symlink out of the root was not refused: {:?}",
        a.replies
    );
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "a file landed outside the root"
    );

    // A symlink to the very directory that was kept is not that directory either: the upload
    // goes through the jail's resolution of the link (inside the root), like any other.
    fs::remove_file(root.join("d")).unwrap();
    fs::create_dir(root.join("real")).unwrap();
    c.stor("real/seven", b"seven", DataMode::Pasv);
    std::os::unix::fs::symlink("real", root.join("d")).unwrap();
    c.stor("d/eight", b"eight", DataMode::Pasv);
    assert_eq!(fs::read(root.join("real/eight")).unwrap(), b"eight");
    c.cmd_expect("QUIT", 221);
}
