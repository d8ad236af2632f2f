//! The S3 client the backend will call (`server::storage::s3::client`), driven from an engine
//! runtime as a core would drive it, against a real 3-node Garage cluster; and against stores
//! that are down (a closed port, a port that never answers, a cluster with every node stopped),
//! which must fail within the retry policy's bound with a transient error, never hang.
//!
//! What the client wrote is checked with the independent test client (`common::s3`) too, so a
//! client that misreads what it wrote cannot pass its own round trip.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::garage::Garage;
use common::s3::{garage_config, run, S3};
use common::{assert_bytes_eq, test_bytes, MIB};
use ringest::server::storage::s3::client::{ETag, S3Client, S3Config, S3Error, UploadId};
use ringest::server::storage::s3::credentials::S3Credentials;
use ringest::server::storage::s3::retry::RetryPolicy;

/// S3's smallest part but the last.
const MIN_PART: usize = 5 * MIB as usize;

/// Slack on top of a retry policy's total: the last attempt's timeout and the scheduling of a
/// loaded 2-core box.
const SLACK: Duration = Duration::from_secs(3);

/// A policy short enough for a test to wait out: 4 attempts within `total`.
fn short_retry(total: Duration) -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        total,
    }
}

fn down_config(endpoint: String, total: Duration) -> S3Config {
    S3Config {
        threads: 2,
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        retry: short_retry(total),
        ..S3Config::new(
            endpoint,
            "garage",
            "bucket",
            S3Credentials::new("GKnobody", "not-a-secret"),
        )
    }
}

#[test]
fn client_round_trips_on_garage_then_fails_bounded_when_every_node_stops() {
    let mut g = Garage::start();
    let checker = S3::for_garage_node(&g, 2);
    let client = Rc::new(S3Client::new(garage_config(&g)).expect("client"));

    let small = test_bytes(100_000, 11);
    let big = test_bytes(MIN_PART + 1, 12);
    let (small2, big2) = (small.clone(), big.clone());
    let c = client.clone();
    run(async move {
        // PUT, read back whole and in ranges; the buffer comes back to the caller.
        let (res, buf) = c.put_object("c/small.bin", small2.clone()).await;
        res.expect("put_object");
        assert_eq!(
            buf.map(|b| b.len()),
            Some(small2.len()),
            "put_object hands its buffer back"
        );
        let back = c.get_range("c/small.bin", 0, None).await.expect("get");
        assert_bytes_eq(&small2, &back, "put_object then get_range(0..)");
        let mid = c.get_range("c/small.bin", 10, Some(1000)).await.unwrap();
        assert_bytes_eq(&small2[10..1000], &mid, "get_range(10..1000)");
        let tail = c.get_range("c/small.bin", 99_990, None).await.unwrap();
        assert_bytes_eq(&small2[99_990..], &tail, "get_range(99990..)");

        let meta = c
            .head("c/small.bin")
            .await
            .unwrap()
            .expect("head of a stored object");
        assert_eq!(meta.size, 100_000);
        let mtime = meta.mtime.expect("Last-Modified");
        let age = SystemTime::now()
            .duration_since(mtime)
            .unwrap_or_else(|e| e.duration());
        assert!(
            age < Duration::from_secs(300),
            "mtime {mtime:?} is {age:?} off"
        );
        assert_eq!(c.head("c/none.bin").await.unwrap(), None);
        assert!(matches!(
            c.get_range("c/none.bin", 0, None).await,
            Err(S3Error::NotFound { .. })
        ));

        // Multipart: a full minimum part and a last part of one byte.
        let id = c.create_multipart("c/multi.bin").await.expect("create");
        let (e1, b1) = c
            .upload_part("c/multi.bin", &id, 1, big2[..MIN_PART].to_vec())
            .await;
        assert_eq!(b1.map(|b| b.len()), Some(MIN_PART));
        let (e2, _) = c
            .upload_part("c/multi.bin", &id, 2, big2[MIN_PART..].to_vec())
            .await;
        assert_eq!(
            c.head("c/multi.bin").await.unwrap(),
            None,
            "visible before CompleteMultipartUpload"
        );
        c.complete_multipart("c/multi.bin", &id, vec![e1.unwrap(), e2.unwrap()])
            .await
            .expect("complete");
        let back = c.get_range("c/multi.bin", 0, None).await.unwrap();
        assert_bytes_eq(&big2, &back, "multipart 5 MiB + 1 B");
        assert_eq!(
            c.head("c/multi.bin").await.unwrap().unwrap().size,
            big2.len() as u64
        );

        // Abort leaves nothing, refuses later parts, and is idempotent.
        let id = c.create_multipart("c/aborted.bin").await.unwrap();
        let (e, _) = c
            .upload_part("c/aborted.bin", &id, 1, big2[..MIN_PART].to_vec())
            .await;
        e.unwrap();
        c.abort_multipart("c/aborted.bin", &id)
            .await
            .expect("abort");
        assert_eq!(c.head("c/aborted.bin").await.unwrap(), None);
        let (late, _) = c
            .upload_part("c/aborted.bin", &id, 2, b"late".to_vec())
            .await;
        assert!(late.is_err(), "a part was accepted for an aborted upload");
        c.abort_multipart("c/aborted.bin", &id)
            .await
            .expect("a second abort");

        // Copy, to a key that needs encoding in x-amz-copy-source and from one that does too.
        c.copy("c/small.bin", "c/copy of small+1.bin")
            .await
            .expect("copy");
        c.copy("c/copy of small+1.bin", "c/copy2.bin")
            .await
            .expect("copy of an encoded key");
        let back = c.get_range("c/copy2.bin", 0, None).await.unwrap();
        assert_bytes_eq(&small2, &back, "copy");
        assert!(matches!(
            c.copy("c/none.bin", "c/x.bin").await,
            Err(S3Error::NotFound { .. })
        ));

        // Listing: flat, and folded by a delimiter.
        let page = c.list("c/", None, None).await.unwrap();
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "c/copy of small+1.bin",
                "c/copy2.bin",
                "c/multi.bin",
                "c/small.bin"
            ]
        );
        assert!(page.objects.iter().all(|o| o.mtime.is_some()));
        assert_eq!(page.objects[3].size, 100_000);
        assert_eq!(page.continuation, None);
        let (res, _) = c.put_object("top.bin", b"top".to_vec()).await;
        res.unwrap();
        let page = c.list("", Some("/"), None).await.unwrap();
        assert_eq!(page.prefixes, ["c/"]);
        let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["top.bin"]);
        assert_eq!(page.continuation, None);

        // Delete; deleting what is gone is still success.
        c.delete("c/small.bin").await.expect("delete");
        assert_eq!(c.head("c/small.bin").await.unwrap(), None);
        c.delete("c/small.bin")
            .await
            .expect("delete of a missing key");
    });

    // Pages: 2 keys per page over the 3 left under c/.
    let paged = S3Client::new(S3Config {
        list_page: 2,
        ..garage_config(&g)
    })
    .unwrap();
    let keys = run(async move {
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = paged.list("c/", None, next.as_deref()).await.unwrap();
            pages += 1;
            assert!(page.objects.len() <= 2);
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.continuation {
                Some(c) => next = Some(c),
                None => break,
            }
            assert!(pages < 10, "listing does not end");
        }
        keys
    });
    assert_eq!(
        keys,
        ["c/copy of small+1.bin", "c/copy2.bin", "c/multi.bin"],
        "paged listing"
    );

    // A wrong secret is refused, not retried as if the store were down.
    let denied = S3Client::new(S3Config {
        credentials: S3Credentials::new(g.key_id.clone(), "0".repeat(64)),
        ..garage_config(&g)
    })
    .unwrap();
    let res = run(async move { denied.head("c/multi.bin").await });
    assert!(
        matches!(res, Err(S3Error::AccessDenied { .. })),
        "wrong secret: {res:?}"
    );

    // The independent client sees what this one wrote.
    assert_bytes_eq(
        &big,
        &checker.get("c/multi.bin").unwrap().unwrap(),
        "checker: multipart",
    );
    assert_bytes_eq(
        &small,
        &checker.get("c/copy2.bin").unwrap().unwrap(),
        "checker: copy",
    );
    assert_eq!(checker.get("c/small.bin").unwrap(), None);
    assert_eq!(checker.get("c/aborted.bin").unwrap(), None);

    // Every node stopped: a store that is down, refused at connect.
    for i in 0..g.nodes.len() {
        g.stop_node(i);
    }
    let total = Duration::from_secs(4);
    let down = S3Client::new(S3Config {
        retry: short_retry(total),
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        ..garage_config(&g)
    })
    .unwrap();
    let t0 = Instant::now();
    let (head, put) = run(async move {
        let head = down.head("c/multi.bin").await;
        let (put, _) = down.put_object("c/after.bin", b"x".to_vec()).await;
        (head, put)
    });
    let took = t0.elapsed();
    for res in [head.map(drop), put] {
        match res {
            Err(e @ S3Error::Unavailable { .. }) => assert!(e.is_transient()),
            other => panic!("with every node stopped: {other:?}"),
        }
    }
    assert!(took < 2 * total + SLACK, "two requests took {took:?}");
}

#[test]
fn closed_port_is_unavailable_after_bounded_attempts() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let total = Duration::from_secs(5);
    let client = S3Client::new(down_config(format!("http://127.0.0.1:{port}"), total)).unwrap();
    let t0 = Instant::now();
    let (get, create) = run(async move {
        (
            client.get_range("k", 0, None).await,
            client.create_multipart("k").await,
        )
    });
    let took = t0.elapsed();
    // Refused at connect: every attempt is made (nothing was sent, so even CreateMultipartUpload
    // is retried), and the back-offs alone are well under the total.
    for res in [get.map(drop), create.map(drop)] {
        match res {
            Err(S3Error::Unavailable { attempts: 4, .. }) => {}
            other => panic!("closed port: {other:?}"),
        }
    }
    assert!(took < 2 * total, "took {took:?}");
}

#[test]
fn silent_store_is_cut_off_at_the_total_time() {
    // Accepts connections (the kernel completes the handshake) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let total = Duration::from_secs(3);
    let client = S3Client::new(down_config(format!("http://127.0.0.1:{port}"), total)).unwrap();
    let t0 = Instant::now();
    let get = run({
        let c = Rc::new(client);
        async move {
            let get = c.get_range("k", 0, None).await;
            let t1 = Instant::now();
            let create = c.create_multipart("k").await;
            (get, create, t1.elapsed())
        }
    });
    let took = t0.elapsed();
    let (get, create, create_took) = get;
    assert!(
        matches!(get, Err(S3Error::Unavailable { .. })),
        "idempotent GET against a silent store: {get:?}"
    );
    // CreateMultipartUpload was sent and not answered: not retried, its outcome unknown.
    assert!(
        matches!(create, Err(S3Error::Timeout { .. })),
        "CreateMultipartUpload against a silent store: {create:?}"
    );
    assert!(create_took < total + SLACK, "create took {create_took:?}");
    assert!(took < 2 * total + SLACK, "took {took:?}");
    drop(listener);
}

/// A store that answers each connection with the next canned reply, then closes it; counts the
/// requests it saw.
fn scripted_store(replies: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for reply in replies {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("expect: 100-continue") {
                    conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    (endpoint, seen)
}

const SLOW_DOWN: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 36\r\n\
                         Connection: close\r\n\r\n<Error><Code>SlowDown</Code></Error>";
const PART_OK: &str =
    "HTTP/1.1 200 OK\r\nETag: \"part-etag\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn a_part_is_retried_through_a_503_but_create_is_not() {
    let (endpoint, seen) = scripted_store(vec![SLOW_DOWN, SLOW_DOWN, PART_OK]);
    let client = S3Client::new(down_config(endpoint, Duration::from_secs(10))).unwrap();
    let (etag, buf) = run(async move {
        client
            .upload_part("k", &UploadId("u".into()), 1, b"part bytes".to_vec())
            .await
    });
    assert_eq!(etag.unwrap(), ETag("\"part-etag\"".into()));
    assert_eq!(
        buf.as_deref(),
        Some(&b"part bytes"[..]),
        "the buffer comes back unchanged"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3, "two 503s, then the part");

    // A 503 to CreateMultipartUpload reached the store: no second upload is started.
    let (endpoint, seen) = scripted_store(vec![SLOW_DOWN]);
    let client = S3Client::new(down_config(endpoint, Duration::from_secs(10))).unwrap();
    let res = run(async move { client.create_multipart("k").await });
    assert!(
        matches!(res, Err(S3Error::Unavailable { attempts: 1, .. })),
        "create after a 503: {res:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn requests_queued_behind_a_dead_store_still_answer_within_the_total() {
    // One worker, a store that never answers, three requests at once: the second and third wait
    // for the worker while the first uses up the total; they must not then start a budget of
    // their own each.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let total = Duration::from_secs(2);
    let client = Rc::new(
        S3Client::new(S3Config {
            threads: 1,
            ..down_config(format!("http://{}", listener.local_addr().unwrap()), total)
        })
        .unwrap(),
    );
    let t0 = Instant::now();
    let results = run(async move {
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let c = client.clone();
                ringest::engine::spawn(async move { c.head(&format!("k{i}")).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    let took = t0.elapsed();
    for res in results {
        assert!(
            matches!(res, Err(S3Error::Unavailable { .. })),
            "queued HEAD against a silent store: {res:?}"
        );
    }
    assert!(took < total + SLACK, "three queued requests took {took:?}");
    drop(listener);
}
