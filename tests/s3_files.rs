//! The S3 backend's file commands (`server::storage::s3::files::S3Files`), driven from an engine
//! runtime as a core would drive them, against a real 3-node Garage cluster; and against a store
//! that is down, which must answer "object store unavailable" within the retry bound.
//!
//! The bucket is seeded and checked with the independent test client (`common::s3`), so a command
//! that misreads what it did cannot pass on its own say-so.

mod common;

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::garage::Garage;
use common::s3::{garage_config, run, S3};
use common::test_bytes;
use ringest::proto::checksum::{Algo, Digest};
use ringest::proto::glob::Glob;
use ringest::proto::listing::{EntryKind, FactPerms, FactSet};
use ringest::proto::path::VPath;
use ringest::proto::session::{FsError, FsOp, FsOutcome};
use ringest::server::storage::s3::client::{S3Client, S3Config};
use ringest::server::storage::s3::credentials::S3Credentials;
use ringest::server::storage::s3::files::S3Files;
use ringest::server::storage::s3::retry::RetryPolicy;

const PREFIX: &str = "users/alice/";

fn client_for(g: &Garage) -> Arc<S3Client> {
    Arc::new(S3Client::new(garage_config(g)).expect("client"))
}

/// A policy short enough for a test to wait out: 4 attempts within `total`.
fn short_retry(total: Duration) -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        total,
    }
}

fn p(s: &str) -> VPath {
    VPath::root().resolve(s).unwrap()
}

fn perms() -> FactPerms {
    FactPerms {
        read: true,
        write: true,
        delete: true,
        mkdir: true,
    }
}

async fn op(f: &S3Files, fsop: FsOp) -> Result<FsOutcome, FsError> {
    f.run(&fsop, perms(), FactSet::ALL).await
}

async fn names(f: &S3Files, path: &str, pattern: Option<&str>) -> io::Result<Vec<String>> {
    let g = pattern.map(|s| Glob::new(s).unwrap());
    let (entries, is_dir) = f.list(&p(path), g.as_ref()).await?;
    assert!(is_dir, "{path} listed as a directory");
    Ok(entries.into_iter().map(|e| e.name).collect())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn digest(algo: Algo, bytes: &[u8]) -> String {
    let mut d = Digest::new(algo);
    d.update(bytes);
    d.finish()
}

/// Puts `n` tiny objects `key_of(i)` from 8 threads (the test client is blocking).
fn seed(s3: &Arc<S3>, n: usize, key_of: fn(usize) -> String) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s3 = s3.clone();
            std::thread::spawn(move || {
                for i in (t..n).step_by(8) {
                    s3.put(&key_of(i), b"x").expect("seed put");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn directories_files_and_renames_on_garage() {
    let g = Garage::start();
    let s3 = S3::for_garage_node(&g, 1);
    let body = test_bytes(100, 7);
    s3.put(&format!("{PREFIX}d/a.txt"), &body).unwrap();
    s3.put(&format!("{PREFIX}d/sub/deep/f.bin"), b"deep")
        .unwrap();
    s3.put("users/alicia/secret", b"not alice's").unwrap();
    s3.put(&format!("{PREFIX}odd/with space+plus é.txt"), b"odd")
        .unwrap();
    let client = client_for(&g);
    let files = S3Files::new(client.clone(), "users/alice".into(), 5000);
    let empty = S3Files::new(client, "users/nobody/".into(), 10);
    let f = files.clone();
    let body2 = body.clone();
    run(async move {
        // The root always exists, even before anything is under it.
        assert_eq!(
            names(&empty, "/", None).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            op(&empty, FsOp::ChangeDir(p("/"))).await,
            Ok(FsOutcome::Done)
        );

        // Listing: files and implied directories, sorted; a prefix never sees a neighbour's keys.
        assert_eq!(names(&f, "/", None).await.unwrap(), ["d", "odd"]);
        assert_eq!(names(&f, "/d", None).await.unwrap(), ["a.txt", "sub"]);
        // Names that need encoding, in a listing, a HEAD and a server-side copy.
        assert_eq!(
            names(&f, "/odd", None).await.unwrap(),
            ["with space+plus é.txt"]
        );
        let odd = FsOp::Rename {
            from: p("/odd/with space+plus é.txt"),
            to: p("/odd/100% ü?.txt"),
        };
        assert_eq!(op(&f, odd).await, Ok(FsOutcome::Done));
        assert_eq!(names(&f, "/odd", None).await.unwrap(), ["100% ü?.txt"]);
        assert_eq!(
            op(&f, FsOp::Size(p("/odd/100% ü?.txt"))).await,
            Ok(FsOutcome::Size(3))
        );
        assert_eq!(
            op(&f, FsOp::Delete(p("/odd/100% ü?.txt"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/odd"))).await,
            Ok(FsOutcome::Done)
        );
        let (entries, _) = f.list(&p("/d"), None).await.unwrap();
        assert_eq!(entries[0].kind, EntryKind::File);
        assert_eq!((entries[0].size, entries[0].perm), (100, 0o644));
        assert!((entries[0].mtime - now_secs()).abs() < 300);
        assert_eq!((entries[1].kind, entries[1].perm), (EntryKind::Dir, 0o755));
        assert_eq!(names(&f, "/d", Some("*.txt")).await.unwrap(), ["a.txt"]);
        let (one, is_dir) = f.list(&p("/d/a.txt"), None).await.unwrap();
        assert!(!is_dir);
        assert_eq!((one[0].name.as_str(), one[0].size), ("a.txt", 100));
        let e = f.list(&p("/nope"), None).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = f.list(&p("/d/a.txt"), Some(&Glob::new("*").unwrap())).await;
        assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::ENOTDIR));

        // CWD and MKD.
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/d/sub"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/nope"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/d/a.txt"))).await,
            Err(FsError::NotADirectory)
        );
        assert_eq!(op(&f, FsOp::MakeDir(p("/m"))).await, Ok(FsOutcome::Done));
        assert_eq!(op(&f, FsOp::MakeDir(p("/m"))).await, Err(FsError::Exists));
        assert_eq!(
            op(&f, FsOp::MakeDir(p("/d/sub"))).await,
            Err(FsError::Exists)
        );
        assert_eq!(
            op(&f, FsOp::MakeDir(p("/d/a.txt"))).await,
            Err(FsError::Exists)
        );
        assert_eq!(
            op(&f, FsOp::MakeDir(p("/x/y"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(
            op(&f, FsOp::MakeDir(p("/d/a.txt/y"))).await,
            Err(FsError::NotADirectory)
        );
        assert_eq!(op(&f, FsOp::MakeDir(p("/m/n"))).await, Ok(FsOutcome::Done));
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/m/n"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(names(&f, "/", None).await.unwrap(), ["d", "m"]);
        assert_eq!(names(&f, "/m", None).await.unwrap(), ["n"]);
        assert_eq!(names(&f, "/m/n", None).await.unwrap(), Vec::<String>::new());

        // RMD: only an empty directory; the marker goes.
        assert_eq!(op(&f, FsOp::RemoveDir(p("/m"))).await, Err(FsError::Exists));
        assert_eq!(op(&f, FsOp::RemoveDir(p("/d"))).await, Err(FsError::Exists));
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/d/a.txt"))).await,
            Err(FsError::NotADirectory)
        );
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/none"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/m/n"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/m/n"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(op(&f, FsOp::RemoveDir(p("/m"))).await, Ok(FsOutcome::Done));
        assert_eq!(names(&f, "/", None).await.unwrap(), ["d"]);

        // SIZE, MDTM, MLST, STAT.
        assert_eq!(
            op(&f, FsOp::Size(p("/d/a.txt"))).await,
            Ok(FsOutcome::Size(100))
        );
        assert_eq!(
            op(&f, FsOp::Size(p("/d"))).await,
            Err(FsError::IsADirectory)
        );
        assert_eq!(op(&f, FsOp::Size(p("/d/zz"))).await, Err(FsError::NotFound));
        match op(&f, FsOp::ModifyTime(p("/d/a.txt"))).await {
            Ok(FsOutcome::ModifyTime(t)) => assert!((t - now_secs()).abs() < 300, "{t}"),
            other => panic!("MDTM: {other:?}"),
        }
        match op(&f, FsOp::Facts(p("/d/a.txt"))).await {
            Ok(FsOutcome::Lines(l)) => {
                assert!(l[0].contains("type=file;size=100;"), "{l:?}");
                assert!(l[0].ends_with(" /d/a.txt"), "{l:?}");
            }
            other => panic!("MLST: {other:?}"),
        }
        match op(&f, FsOp::Facts(p("/d/sub"))).await {
            Ok(FsOutcome::Lines(l)) => assert!(l[0].contains("type=dir;"), "{l:?}"),
            other => panic!("MLST dir: {other:?}"),
        }
        match op(&f, FsOp::StatList(p("/d"))).await {
            Ok(FsOutcome::Lines(l)) => {
                assert_eq!(l.len(), 2, "{l:?}");
                assert!(l[0].starts_with("-rw-r--r--") && l[0].ends_with(" a.txt"));
                assert!(l[1].starts_with("drwxr-xr-x") && l[1].ends_with(" sub"));
            }
            other => panic!("STAT: {other:?}"),
        }
        let mfmt = FsOp::SetTimes {
            path: p("/d/a.txt"),
            mtime: 0,
            atime: None,
        };
        assert_eq!(op(&f, mfmt).await, Err(FsError::PermissionDenied));
        let chmod = FsOp::Chmod {
            path: p("/d/a.txt"),
            mode: 0o600,
        };
        assert_eq!(op(&f, chmod).await, Err(FsError::PermissionDenied));

        // Checksums, whole and of a range, against the same digest code.
        for (algo, off, len) in [(Algo::Md5, 0, None), (Algo::Crc32, 10, Some(50))] {
            let end = len.map_or(100, |l| off + l) as usize;
            let fsop = FsOp::Checksum {
                path: p("/d/a.txt"),
                algo,
                offset: off,
                length: len,
            };
            assert_eq!(
                op(&f, fsop).await,
                Ok(FsOutcome::Checksum {
                    hex: digest(algo, &body2[off as usize..end]),
                    end: end as u64
                })
            );
        }
        let fsop = FsOp::Checksum {
            path: p("/d"),
            algo: Algo::Md5,
            offset: 0,
            length: None,
        };
        assert_eq!(op(&f, fsop).await, Err(FsError::IsADirectory));

        // DELE: a missing file is not found (S3's DELETE of it would succeed); a directory is
        // not a file. A directory implied only by its last key stays, empty, as on a disk.
        assert_eq!(
            op(&f, FsOp::Delete(p("/d/none"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(
            op(&f, FsOp::Delete(p("/d/sub"))).await,
            Err(FsError::IsADirectory)
        );
        assert_eq!(
            op(&f, FsOp::Delete(p("/d/sub/deep/f.bin"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::Size(p("/d/sub/deep/f.bin"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(
            names(&f, "/d/sub/deep", None).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/d/sub/deep"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/d/sub"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::RemoveDir(p("/d/sub"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, FsOp::ChangeDir(p("/d/sub"))).await,
            Err(FsError::NotFound)
        );
        assert_eq!(names(&f, "/d", None).await.unwrap(), ["a.txt"]);

        // Rename: copy and delete for a file; refused for a directory.
        assert_eq!(
            op(&f, FsOp::RenameFrom(p("/d/a.txt"))).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(op(&f, FsOp::RenameFrom(p("/d"))).await, Ok(FsOutcome::Done));
        assert_eq!(
            op(&f, FsOp::RenameFrom(p("/d/z"))).await,
            Err(FsError::NotFound)
        );
        let rn = |from: &str, to: &str| FsOp::Rename {
            from: p(from),
            to: p(to),
        };
        assert_eq!(
            op(&f, rn("/d/a.txt", "/d/b.txt")).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, rn("/d/b.txt", "/d/b.txt")).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(op(&f, rn("/d", "/e")).await, Err(FsError::PermissionDenied));
        assert_eq!(op(&f, rn("/d/none", "/d/c")).await, Err(FsError::NotFound));
        assert_eq!(op(&f, rn("/d/b.txt", "/q/c")).await, Err(FsError::NotFound));
        assert_eq!(op(&f, FsOp::MakeDir(p("/k"))).await, Ok(FsOutcome::Done));
        assert_eq!(
            op(&f, rn("/d/b.txt", "/k")).await,
            Err(FsError::IsADirectory)
        );
        assert_eq!(
            op(&f, rn("/d/b.txt", "/k/b.txt")).await,
            Ok(FsOutcome::Done)
        );
        assert_eq!(
            op(&f, rn("/k/b.txt", "/d/b.txt")).await,
            Ok(FsOutcome::Done)
        );
    });
    assert_eq!(s3.get(&format!("{PREFIX}d/a.txt")).unwrap(), None);
    assert_eq!(s3.get(&format!("{PREFIX}k/b.txt")).unwrap(), None);
    assert_eq!(
        s3.get(&format!("{PREFIX}d/b.txt")).unwrap().as_deref(),
        Some(&body[..])
    );
    assert_eq!(
        s3.get("users/alicia/secret").unwrap().as_deref(),
        Some(&b"not alice's"[..]),
        "a neighbour's key is untouched"
    );

    // The no-overwrite policy: RNTO onto an existing file is refused, and nothing moves.
    s3.put(&format!("{PREFIX}d/c.txt"), b"c").unwrap();
    let strict = files.clone().refusing_overwrite(true);
    run(async move {
        let rn = FsOp::Rename {
            from: p("/d/b.txt"),
            to: p("/d/c.txt"),
        };
        assert_eq!(op(&strict, rn.clone()).await, Err(FsError::Exists));
        assert!(strict.exists(&p("/d/b.txt")).await.unwrap());
        assert!(strict.exists(&p("/d")).await.unwrap());
        assert!(!strict.exists(&p("/d/none")).await.unwrap());
        let replacing = strict.refusing_overwrite(false);
        assert_eq!(op(&replacing, rn).await, Ok(FsOutcome::Done));
    });
    assert_eq!(
        s3.get(&format!("{PREFIX}d/c.txt")).unwrap().as_deref(),
        Some(&body[..])
    );
}

#[test]
fn downloads_read_ranges_and_stop_at_the_end() {
    let mut g = Garage::start();
    let s3 = S3::for_garage(&g);
    let body = test_bytes(100_000, 3);
    s3.put(&format!("{PREFIX}f.bin"), &body).unwrap();
    s3.put(&format!("{PREFIX}empty"), b"").unwrap();
    s3.put(&format!("{PREFIX}dir/"), b"").unwrap();
    let f = S3Files::new(client_for(&g), PREFIX.into(), 100);
    let body2 = body.clone();
    run(async move {
        let (key, size) = f.open_download(&p("/f.bin")).await.unwrap();
        assert_eq!((key.as_str(), size), ("users/alice/f.bin", 100_000));
        let e = f.open_download(&p("/dir")).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = f.open_download(&p("/")).await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = f.open_download(&p("/none")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);

        // Reads fill the spare capacity, after what the buffer already holds.
        let mut buf = Vec::with_capacity(64 << 10);
        buf.extend_from_slice(b"head");
        let (n, buf) = f.read(&key, buf, 0).await;
        assert_eq!(n.unwrap(), (64 << 10) - 4);
        assert_eq!(&buf[..4], b"head");
        assert_eq!(&buf[4..], &body2[..(64 << 10) - 4]);
        // Across the end: only what is left.
        let (n, buf) = f.read(&key, Vec::with_capacity(10_000), 95_000).await;
        assert_eq!(n.unwrap(), 5_000);
        assert_eq!(&buf[..], &body2[95_000..]);
        // At and after the end: 0.
        for off in [100_000, 100_001, 1 << 40] {
            let (n, buf) = f.read(&key, Vec::with_capacity(100), off).await;
            assert_eq!((n.unwrap(), buf.len()), (0, 0), "offset {off}");
        }
        // No spare room: 0, nothing asked of the store.
        let (n, _) = f.read(&key, Vec::new(), 0).await;
        assert_eq!(n.unwrap(), 0);
        // An empty object reads as its end at once.
        let (ekey, esize) = f.open_download(&p("/empty")).await.unwrap();
        assert_eq!(esize, 0);
        let (n, _) = f.read(&ekey, Vec::with_capacity(100), 0).await;
        assert_eq!(n.unwrap(), 0);
        // A key that vanished since it was opened.
        let (n, _) = f.read("users/alice/gone", Vec::with_capacity(100), 0).await;
        assert_eq!(n.unwrap_err().kind(), io::ErrorKind::NotFound);
    });

    // A client whose GETs are capped at 4 KiB: a read returns at most that, and a checksum
    // takes 25 GETs and still digests every byte once, in order.
    let small_gets = S3Config {
        max_get: 4096,
        ..garage_config(&g)
    };
    let f = S3Files::new(
        Arc::new(S3Client::new(small_gets).unwrap()),
        PREFIX.into(),
        100,
    );
    let body2 = body.clone();
    run(async move {
        let (n, buf) = f
            .read("users/alice/f.bin", Vec::with_capacity(64 << 10), 1000)
            .await;
        assert_eq!(n.unwrap(), 4096);
        assert_eq!(&buf[..], &body2[1000..5096]);
        for (algo, off, len) in [(Algo::Sha256, 0, None), (Algo::Adler32, 777, Some(50_000))] {
            let end = len.map_or(100_000, |l| off + l);
            let fsop = FsOp::Checksum {
                path: p("/f.bin"),
                algo,
                offset: off,
                length: len,
            };
            assert_eq!(
                op(&f, fsop).await,
                Ok(FsOutcome::Checksum {
                    hex: digest(algo, &body2[off as usize..end as usize]),
                    end
                })
            );
        }
        let fsop = FsOp::Checksum {
            path: p("/f.bin"),
            algo: Algo::Md5,
            offset: 100_001,
            length: None,
        };
        assert!(matches!(op(&f, fsop).await, Err(FsError::Other(_))));
    });

    // Every node stopped: the same calls fail as "unavailable" within the retry bound.
    let total = Duration::from_secs(3);
    let down = S3Config {
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        retry: short_retry(total),
        ..garage_config(&g)
    };
    let f = S3Files::new(Arc::new(S3Client::new(down).unwrap()), PREFIX.into(), 100);
    for i in 0..g.nodes.len() {
        g.stop_node(i);
    }
    let t0 = Instant::now();
    run(async move {
        let e = f.open_download(&p("/f.bin")).await.unwrap_err();
        assert_eq!(e.to_string(), "object store unavailable");
        let (n, _) = f.read("users/alice/f.bin", Vec::with_capacity(10), 0).await;
        assert_eq!(n.unwrap_err().to_string(), "object store unavailable");
        assert_eq!(
            op(&f, FsOp::Delete(p("/f.bin"))).await,
            Err(FsError::Other("object store unavailable".into()))
        );
    });
    let took = t0.elapsed();
    assert!(took < 3 * (total + Duration::from_secs(2)), "took {took:?}");
}

#[test]
fn listings_follow_pages_past_a_thousand_keys() {
    let g = Garage::start();
    let s3 = Arc::new(S3::for_garage(&g));
    const N: usize = 1_100;
    seed(&s3, N, |i| format!("{PREFIX}many/f-{i:05}"));
    s3.put(&format!("{PREFIX}many/zdir/x"), b"x").unwrap();
    s3.put(&format!("{PREFIX}many/"), b"").unwrap();
    let client = client_for(&g);
    let all = S3Files::new(client.clone(), PREFIX.into(), 5_000);
    let capped = S3Files::new(client, PREFIX.into(), 1_050);
    run(async move {
        let got = names(&all, "/many", None).await.unwrap();
        let mut want: Vec<String> = (0..N).map(|i| format!("f-{i:05}")).collect();
        want.push("zdir".into());
        assert_eq!(
            got, want,
            "every key of both pages, sorted, the marker not listed"
        );
        // A pattern that matches across both pages.
        let got = names(&all, "/many", Some("f-0*0")).await.unwrap();
        let want: Vec<String> = (0..N)
            .filter(|i| i % 10 == 0)
            .map(|i| format!("f-{i:05}"))
            .collect();
        assert_eq!(got, want);
        // max_list cuts the listing.
        assert_eq!(names(&capped, "/many", None).await.unwrap().len(), 1_050);
        // RMD of a big directory is refused from its first page.
        assert_eq!(
            op(&all, FsOp::RemoveDir(p("/many"))).await,
            Err(FsError::Exists)
        );
    });
}

#[test]
fn a_store_that_is_down_is_unavailable_within_the_bound() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let total = Duration::from_secs(3);
    let cfg = S3Config {
        threads: 2,
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        retry: short_retry(total),
        ..S3Config::new(
            format!("http://127.0.0.1:{port}"),
            "garage",
            "bucket",
            S3Credentials::new("GKnobody", "not-a-secret"),
        )
    };
    let f = S3Files::new(Arc::new(S3Client::new(cfg).unwrap()), PREFIX.into(), 100);
    let t0 = Instant::now();
    run(async move {
        let unavailable = FsError::Other("object store unavailable".into());
        assert_eq!(op(&f, FsOp::Size(p("/f"))).await, Err(unavailable.clone()));
        assert_eq!(op(&f, FsOp::MakeDir(p("/d"))).await, Err(unavailable));
        let e = f.list(&p("/"), None).await.unwrap_err();
        assert_eq!(e.to_string(), "object store unavailable");
        assert!(!e.to_string().contains("127.0.0.1"));
        let (n, _) = f.read("k", Vec::with_capacity(10), 0).await;
        assert_eq!(n.unwrap_err().to_string(), "object store unavailable");
        let e = f.open_download(&p("/f")).await.unwrap_err();
        assert_eq!(e.to_string(), "object store unavailable");
    });
    let took = t0.elapsed();
    // Five operations, each one request that gives up within `total`.
    assert!(took < 5 * (total + Duration::from_secs(2)), "took {took:?}");
}
