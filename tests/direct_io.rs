//! Large uploads with O_DIRECT writes from the registered buffers: every size around the alignment
//! edges lands byte-exact (from the first byte with `direct_io = on`, and switching mid-upload with
//! `auto`), a file system without O_DIRECT still lands them, an aborted upload lands nothing, and a
//! download right after a direct upload returns the new bytes, not a stale page cache.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SIZES: [u64; 9] = [0, 1, 4095, 4096, 4097, MIB - 1, MIB, MIB + 1, 256 * MIB + 7];

/// Uploads `file` as `name` with curl (EPSV), then downloads it back and compares both.
fn roundtrip(
    addr: std::net::SocketAddr,
    user: &str,
    pass: &str,
    root: &Path,
    file: &Path,
    name: &str,
) {
    let url = format!("ftp://{user}:{pass}@{addr}/{name}");
    run_cmd(
        curl(300).arg("-T").arg(file).arg(&url),
        Duration::from_secs(330),
    )
    .assert_success(&format!("curl upload {name}"));
    assert_same_file(file, &root.join(name), &format!("{name} on disk"));
    let back = file.with_extension("back");
    run_cmd(
        curl(300).arg("-o").arg(&back).arg(&url),
        Duration::from_secs(330),
    )
    .assert_success(&format!("curl download {name}"));
    assert_same_file(file, &back, &format!("{name} downloaded"));
    let _ = std::fs::remove_file(&back);
}

/// `ringest_direct_io_bytes_total` of a server started with `--metrics-listen`.
fn direct_bytes(lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> f64 {
    let (_, body) = http_get(&metrics_addr(lines), "/metrics");
    metric(&body, "ringest_direct_io_bytes_total").expect("direct I/O metric")
}

fn server(direct: &str, threshold: Option<u64>) -> Server {
    let mut extra = vec![
        "--direct-io".to_string(),
        direct.to_string(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ];
    if let Some(t) = threshold {
        extra.push("--direct-io-threshold".into());
        extra.push(t.to_string());
    }
    Server::start_with(ServerOpts {
        extra_args: extra,
        ..ServerOpts::default()
    })
}

fn all_sizes_land_byte_exact(srv: &Server, tag: &str) {
    sizes_land_byte_exact(srv, tag, &SIZES);
}

/// Uploads one file of each size, in order, and checks each on disk and downloaded back.
fn sizes_land_byte_exact(srv: &Server, tag: &str, sizes: &[u64]) {
    for (i, &size) in sizes.iter().enumerate() {
        let file = make_test_file(
            &srv.scratch(),
            &format!("{tag}-{i}.src"),
            size,
            900 + i as u64,
        );
        roundtrip(
            srv.addr,
            &srv.user,
            &srv.pass,
            srv.root(),
            &file,
            &format!("{tag}-{size}.bin"),
        );
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn direct_uploads_from_the_first_byte_land_byte_exact_at_every_alignment_edge() {
    let srv = server("on", None);
    all_sizes_land_byte_exact(&srv, "on");
    // Every byte of every upload went around the page cache (the sizes sum to 258 MiB + 16392).
    let total: u64 = SIZES.iter().sum();
    assert_eq!(direct_bytes(&srv.stdout_lines), total as f64);
}

/// The direct-write buffers are kept from one upload to the next: files that get smaller, each
/// ending inside a buffer an earlier file filled further, must carry none of its bytes (the tail is
/// zero-padded for the write, then cut).
#[test]
fn direct_uploads_that_shrink_carry_no_bytes_of_earlier_ones() {
    let srv = server("on", None);
    sizes_land_byte_exact(
        &srv,
        "shrink",
        &[3 * MIB + 5, 2 * MIB + 1, MIB - 1, 8191, 4097, 1],
    );
}

#[test]
fn uploads_switching_to_direct_mid_way_land_byte_exact() {
    // A threshold that is not a multiple of the alignment: the switch waits for the next boundary.
    let srv = server("auto", Some(65_536 + 100));
    all_sizes_land_byte_exact(&srv, "auto");
    // Only the larger uploads switched, each after its first 68 KiB (the threshold rounded up
    // to the alignment).
    let switched: u64 = SIZES
        .iter()
        .filter(|&&s| s > 69_632)
        .map(|&s| s - 69_632)
        .sum();
    assert_eq!(direct_bytes(&srv.stdout_lines), switched as f64);
}

#[test]
fn buffered_path_is_unchanged_with_direct_io_off() {
    let srv = server("off", None);
    for &size in &[4097, MIB + 1] {
        let file = make_test_file(&srv.scratch(), "off.src", size, 5);
        roundtrip(
            srv.addr,
            &srv.user,
            &srv.pass,
            srv.root(),
            &file,
            &format!("off-{size}.bin"),
        );
    }
    assert_eq!(direct_bytes(&srv.stdout_lines), 0.0);
}

/// Serves a root on `root` with `direct_io = on`, uploads a few sizes, and returns the bytes
/// written with O_DIRECT and the server's stderr.
fn direct_uploads_into(root: &Path, scratch: &Path) -> (f64, String) {
    let args = proc_args(
        root,
        &["--direct-io", "on", "--metrics-listen", "127.0.0.1:0"],
    );
    let stderr = scratch.join("stderr.log");
    let srv = ServerProc::start(&args, &[], &stderr);
    for &size in &[1, 4097, MIB + 1, 16 * MIB + 3] {
        let file = make_test_file(scratch, "fs.src", size, 17);
        roundtrip(srv.addr, "u", "p", root, &file, &format!("fs-{size}.bin"));
    }
    let direct = direct_bytes(&srv.stdout_lines);
    drop(srv);
    (direct, std::fs::read_to_string(&stderr).unwrap_or_default())
}

/// tmpfs takes O_DIRECT on this kernel (since 6.6): the uploads go around the page cache.
#[test]
fn direct_uploads_to_tmpfs_land() {
    let base = tempfile::Builder::new()
        .prefix("ringest-shm-")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm (tmpfs)");
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (direct, _) = direct_uploads_into(&root, scratch.path());
    assert!(direct > 0.0, "no direct writes on tmpfs");
}

/// ramfs refuses O_DIRECT (EINVAL): the uploads land through the page cache, and the refusal is
/// logged once. Mounting needs root, as the suite runs in CI.
#[test]
fn a_file_system_without_o_direct_gets_buffered_writes() {
    let base = tempfile::Builder::new()
        .prefix("ringest-ramfs-")
        .tempdir()
        .unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let r = run_cmd(
        Command::new("mount")
            .args(["-t", "ramfs", "ramfs"])
            .arg(&mnt),
        Duration::from_secs(30),
    );
    r.assert_success("mount -t ramfs (the test suite runs as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mnt);
    let root = mnt.join("root");
    std::fs::create_dir(&root).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (direct, log) = direct_uploads_into(&root, scratch.path());
    assert_eq!(direct, 0.0, "ramfs cannot take direct writes");
    assert_eq!(
        log.matches("refused O_DIRECT").count(),
        1,
        "one log line for the refusal:\n{log}"
    );
}

#[test]
fn a_download_after_a_direct_overwrite_returns_the_new_bytes() {
    let srv = server("on", None);
    let old = make_test_file(&srv.scratch(), "old.src", 3 * MIB + 5, 1);
    let new = make_test_file(&srv.scratch(), "new.src", 3 * MIB + 5, 2);
    // The old content is uploaded buffered-or-direct and read back (so it sits in the page cache),
    // then replaced by a direct upload of other bytes of the same size.
    roundtrip(srv.addr, &srv.user, &srv.pass, srv.root(), &old, "same.bin");
    roundtrip(srv.addr, &srv.user, &srv.pass, srv.root(), &new, "same.bin");
}

#[test]
fn an_interrupted_direct_upload_lands_nothing() {
    let srv = server("on", None);
    let file = make_test_file(&srv.scratch(), "big.src", 64 * MIB, 3);
    let url = format!("ftp://{}:{}@{}/cut.bin", srv.user, srv.pass, srv.addr);
    // curl gives up after 2 s at 4 MB/s: the server sees the data connection end early.
    let r = run_cmd(
        Command::new("curl")
            .args(["-sS", "--limit-rate", "4M", "--max-time", "2", "-T"])
            .arg(&file)
            .arg(&url),
        Duration::from_secs(30),
    );
    assert!(
        !r.success(),
        "the upload was meant to be cut:\n{}",
        r.describe()
    );
    // A cut stream-mode upload without ALLO looks complete to the server (its data connection
    // closed), so it may land truncated; what must never appear is a file that is neither absent
    // nor exactly the bytes received, i.e. garbage from padding or preallocation.
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(got) = std::fs::read(srv.root().join("cut.bin")) {
        let want = std::fs::read(&file).unwrap();
        assert!(
            got.len() < want.len() && want.starts_with(&got),
            "a cut direct upload left {} bytes that are not a prefix of what was sent",
            got.len()
        );
    }
    let names: Vec<String> = dir_names(srv.root())
        .into_iter()
        .filter(|n| n.starts_with(".ringest-"))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn killing_the_server_mid_direct_upload_leaves_nothing() {
    let srv = server("on", None);
    let file = make_test_file(&srv.scratch(), "big.src", 256 * MIB, 4);
    let url = format!("ftp://{}:{}@{}/killed.bin", srv.user, srv.pass, srv.addr);
    let mut child = Command::new("curl")
        .args(["-sS", "--limit-rate", "20M", "-T"])
        .arg(&file)
        .arg(&url)
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on the PID of the server this test started.
    unsafe { libc::kill(srv.pid() as i32, libc::SIGKILL) };
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    let left: Vec<String> = dir_names(srv.root());
    assert!(
        left.is_empty(),
        "a killed direct upload left {left:?} (it was an anonymous O_TMPFILE)"
    );
}
