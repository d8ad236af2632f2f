//! The S3 test bench itself: a real 3-node Garage cluster (tests/common/garage.rs) and the S3
//! client the later storage tests check objects with (tests/common/s3.rs). If these fail, the
//! S3 storage tests' failures say nothing about ringest.
//!
//! One cluster for all checks: starting one costs seconds, and the checks use distinct keys.

mod common;

use std::time::Instant;

use common::garage::Garage;
use common::s3::S3;
use common::{assert_bytes_eq, test_bytes, MIB};

/// S3's smallest part but the last.
const MIN_PART: usize = 5 * MIB as usize;

#[test]
fn garage_cluster_serves_put_get_multipart_and_abort() {
    let t0 = Instant::now();
    let g = Garage::start();
    eprintln!(
        "garage: 3 nodes up, layout applied, bucket ready in {:.1?}",
        t0.elapsed()
    );
    let s3 = S3::for_garage(&g);

    // One PUT, read back byte-exact, through another node than the one written to: the object is
    // the cluster's, not one node's.
    let small = test_bytes(100_000, 1);
    s3.put("smoke/small.bin", &small).unwrap();
    let other = S3::for_garage_node(&g, 2);
    let back = other.get("smoke/small.bin").unwrap().expect("object");
    assert_bytes_eq(&small, &back, "PUT then GET");
    assert!(other.exists("smoke/small.bin").unwrap());

    // Two parts: a full minimum-size part and a last part of one byte.
    let big = test_bytes(MIN_PART + 1, 2);
    let id = s3.create_multipart("smoke/multipart.bin").unwrap();
    let e1 = s3
        .upload_part("smoke/multipart.bin", &id, 1, &big[..MIN_PART])
        .unwrap();
    let e2 = s3
        .upload_part("smoke/multipart.bin", &id, 2, &big[MIN_PART..])
        .unwrap();
    assert!(
        !s3.exists("smoke/multipart.bin").unwrap(),
        "a multipart upload is visible before CompleteMultipartUpload"
    );
    s3.complete_multipart("smoke/multipart.bin", &id, &[e1, e2])
        .unwrap();
    let back = s3.get("smoke/multipart.bin").unwrap().expect("object");
    assert_bytes_eq(&big, &back, "multipart upload of 5 MiB + 1 byte");

    // An aborted upload leaves nothing behind, not even after its parts were sent.
    let id = s3.create_multipart("smoke/aborted.bin").unwrap();
    s3.upload_part("smoke/aborted.bin", &id, 1, &big[..MIN_PART])
        .unwrap();
    s3.abort_multipart("smoke/aborted.bin", &id).unwrap();
    assert_eq!(s3.get("smoke/aborted.bin").unwrap(), None);
    assert!(
        s3.upload_part("smoke/aborted.bin", &id, 2, b"late")
            .is_err(),
        "a part was accepted for an aborted upload"
    );

    // What REST and RNTO will map onto: a ranged GET, and a server-side copy.
    let tail = s3
        .get_from("smoke/multipart.bin", MIN_PART as u64 - 10)
        .unwrap();
    assert_bytes_eq(&big[MIN_PART - 10..], &tail, "ranged GET");
    s3.copy("smoke/small.bin", "smoke/copy.bin").unwrap();
    let back = s3.get("smoke/copy.bin").unwrap().expect("copied object");
    assert_bytes_eq(&small, &back, "CopyObject");

    let mut keys = s3.list("smoke/").unwrap();
    keys.sort();
    assert_eq!(
        keys,
        ["smoke/copy.bin", "smoke/multipart.bin", "smoke/small.bin"]
    );

    s3.delete("smoke/small.bin").unwrap();
    assert!(!s3.exists("smoke/small.bin").unwrap());
    eprintln!("smoke checks done in {:.1?}", t0.elapsed());
}

/// The handle for the later "stopping one node loses no acknowledged object" tests: with one
/// node of three killed, the other two still form a quorum and serve what was written before.
#[test]
fn garage_object_survives_one_node_stopped() {
    let mut g = Garage::start();
    let s3 = S3::for_garage_node(&g, 0);
    let data = test_bytes(300_000, 3);
    s3.put("survive/a.bin", &data).unwrap();
    let pid = g.nodes[1].pid().expect("node 1 running");
    g.stop_node(1);
    assert!(!g.nodes[1].is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true),
        "node 1 (pid {pid}) still alive after stop_node"
    );
    let back = S3::for_garage_node(&g, 2)
        .get("survive/a.bin")
        .unwrap()
        .expect("object after one node stopped");
    assert_bytes_eq(&data, &back, "GET with one node stopped");
    // Writes still reach a quorum.
    s3.put("survive/b.bin", b"after").unwrap();
    g.restart_node(1);
    let back = S3::for_garage_node(&g, 1)
        .get("survive/b.bin")
        .unwrap()
        .expect("object written while node 1 was down, read through node 1");
    assert_eq!(back, b"after");
}
