//! Benchmarks of the sans-IO protocol core: the per-command and per-byte costs the server pays on
//! top of the kernel. Sample sizes and times are small so the whole run stays well under two minutes
//! on a shared 2-core machine; use `--measurement-time` to get tighter numbers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringest::proto::checksum::{Algo, InOrder};
use ringest::proto::command::{parse, LineBuffer};
use ringest::proto::modeb::{Decoder, Encoder, Event};
use ringest::proto::modee;
use ringest::proto::path::VPath;
use ringest::proto::reply::Reply;

/// Typical command lines of an ingest session.
const LINES: &[&[u8]] = &[
    b"STOR file-000123.bin",
    b"PASV",
    b"EPSV",
    b"TYPE I",
    b"MODE B",
    b"EPRT |1|127.0.0.1|40000|",
    b"PORT 127,0,0,1,156,64",
    b"REST 1048576",
    b"CWD /incoming/2024/batch-17",
    b"LIST -la",
    b"USER ingest",
    b"NOOP",
];

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("command");
    g.throughput(Throughput::Elements(LINES.len() as u64));
    g.bench_function("parse_mix", |b| {
        b.iter(|| {
            for line in LINES {
                let _ = black_box(parse(black_box(line)));
            }
        })
    });

    // One read carrying 64 pipelined commands, as a client that does not wait for replies sends.
    let mut packet = Vec::new();
    for i in 0..64 {
        packet.extend_from_slice(format!("STOR file-{i:06}.bin\r\n").as_bytes());
    }
    g.throughput(Throughput::Bytes(packet.len() as u64));
    g.bench_function("linebuffer_pipelined_64", |b| {
        let mut lb = LineBuffer::new(512);
        b.iter(|| {
            lb.push(black_box(&packet));
            while let Some(line) = lb.next_line() {
                let _ = black_box(line);
            }
        })
    });
    g.finish();
}

fn bench_reply(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    let single = Reply::new(226, "Transfer complete");
    let multi = Reply::multi(
        211,
        [
            "Features:",
            "EPRT",
            "EPSV",
            "MDTM",
            "MLST type*;size*;modify*;",
            "MODE B",
            "PASV",
            "REST STREAM",
            "SIZE",
            "UTF8",
            "End",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let mut out = Vec::with_capacity(1024);
    g.bench_function("encode_single", |b| {
        b.iter(|| {
            out.clear();
            black_box(&single).encode(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("encode_multi_11", |b| {
        b.iter(|| {
            out.clear();
            black_box(&multi).encode(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("path");
    let cwd = VPath::root()
        .resolve("/incoming/2024/batch-17")
        .unwrap_or_default();
    let args = [
        "file-000123.bin",
        "../other/x.bin",
        "/abs/path/y.bin",
        "./a/./b/../c",
    ];
    g.throughput(Throughput::Elements(args.len() as u64));
    g.bench_function("resolve_mix", |b| {
        b.iter(|| {
            for a in &args {
                let _ = black_box(cwd.resolve(black_box(a)));
            }
        })
    });
    g.finish();
}

/// Decodes `stream` fed in chunks of `chunk` bytes and returns the payload byte count.
fn decode(stream: &[u8], chunk: usize) -> usize {
    let mut dec = Decoder::new();
    let mut total = 0;
    for input in stream.chunks(chunk) {
        let mut pos = 0;
        while let Ok(Some(ev)) = dec.next(input, &mut pos) {
            if let Event::Data(d) = ev {
                total += d.len();
            }
        }
    }
    total
}

fn bench_modeb(c: &mut Criterion) {
    let mut g = c.benchmark_group("modeb");
    const CHUNK: usize = 64 * 1024;

    // 256 files of 4 KiB each (1 MiB of payload), one block per file with the EOF bit.
    let small = vec![0xA5u8; 4096];
    let mut many = Vec::new();
    for _ in 0..256 {
        Encoder::file(&small, &mut many);
    }
    g.throughput(Throughput::Bytes(many.len() as u64));
    g.bench_function("decode_4k_files", |b| {
        b.iter(|| black_box(decode(black_box(&many), CHUNK)))
    });

    // One 8 MiB file in full 64 KiB blocks.
    let big = vec![0x5Au8; 8 << 20];
    let mut blocks = Vec::new();
    Encoder::file(&big, &mut blocks);
    g.throughput(Throughput::Bytes(blocks.len() as u64));
    g.bench_function("decode_64k_blocks", |b| {
        b.iter(|| black_box(decode(black_box(&blocks), CHUNK)))
    });

    // Encoding copies the payload; a reused output buffer keeps page faults out of the numbers.
    let mut out = Vec::with_capacity(blocks.len().max(many.len()));
    g.throughput(Throughput::Bytes(256 * small.len() as u64));
    g.bench_function("encode_4k_files", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..256 {
                Encoder::file(black_box(&small), &mut out);
            }
            black_box(out.len())
        })
    });

    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("encode_64k_blocks", |b| {
        b.iter(|| {
            out.clear();
            Encoder::file(black_box(&big), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// MODE E receive path: 8 MiB in 256 KiB blocks, sent in reverse order and dealt round-robin to 4
/// connections, each stream decoded in 64 KiB buffers into one Transfer. Connections are decoded
/// one after another, so the range set first grows to one range per block of the first
/// connection, then merges as the others fill the gaps. Payload is never touched (that is the
/// point of the zero-copy decoder), so the throughput is per-block bookkeeping only.
fn bench_modee(c: &mut Criterion) {
    let mut g = c.benchmark_group("modee");
    const CHUNK: usize = 64 * 1024;
    const BLOCK: usize = 256 * 1024;
    const CONNS: usize = 4;
    let big = vec![0x5Au8; 8 << 20];
    let mut streams = vec![Vec::new(); CONNS];
    for (i, block) in big.chunks(BLOCK).enumerate().rev() {
        let off = (i * BLOCK) as u64;
        modee::Encoder::data(off, block, &mut streams[i % CONNS]).expect("fits in u64");
    }
    modee::Encoder::eof(CONNS as u64, &mut streams[0]);
    for s in &mut streams {
        modee::Encoder::eod(s);
    }
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("decode_4conn_256k_blocks_reversed", |b| {
        b.iter(|| {
            let mut tr = modee::Transfer::new(modee::Limits::default());
            for (conn, stream) in streams.iter().enumerate() {
                let mut dec = modee::Decoder::default();
                for input in black_box(stream).chunks(CHUNK) {
                    let mut pos = 0;
                    while let Ok(Some(ev)) = dec.next(input, &mut pos) {
                        let _ = tr.on_event(conn as u32, &ev);
                    }
                }
            }
            assert!(tr.is_complete());
            black_box(tr.len())
        })
    });
    g.finish();
}

/// Inline checksums: what each algorithm costs per byte of upload, fed 64 KiB at a time (one
/// registered buffer), and the in-order gate with MODE E's 1 MiB blocks arriving pairwise swapped.
fn bench_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    g.throughput(Throughput::Bytes(data.len() as u64));
    for algo in [
        Algo::Crc32c,
        Algo::Crc32,
        Algo::Adler32,
        Algo::Md5,
        Algo::Sha1,
        Algo::Sha256,
    ] {
        g.bench_function(algo.key(), |b| {
            b.iter(|| {
                let mut gate = InOrder::new(&[algo], 0);
                for (i, piece) in black_box(&data).chunks(64 * 1024).enumerate() {
                    gate.feed((i * 64 * 1024) as u64, piece);
                }
                black_box(gate.finish(data.len() as u64))
            })
        });
    }
    g.bench_function("sha256_gate_swapped_1m_blocks", |b| {
        const BLOCK: usize = 1 << 20;
        b.iter(|| {
            let mut gate = InOrder::new(&[Algo::Sha256], 4 * BLOCK);
            let blocks: Vec<&[u8]> = data.chunks(BLOCK).collect();
            for pair in (0..blocks.len()).collect::<Vec<_>>().chunks(2) {
                for &i in pair.iter().rev() {
                    gate.feed((i * BLOCK) as u64, blocks[i]);
                }
            }
            black_box(gate.finish(data.len() as u64))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse, bench_reply, bench_path, bench_modeb, bench_modee, bench_checksum
}
criterion_main!(benches);
