#!/usr/bin/env python3
"""What inline checksums cost (issue 11): server CPU and time per upload, and the time to a
verified upload (the 226, then CKSM), with no checksums, SHA-256 and CRC32C computed inline,
against answering CKSM by a second read of the file.

    bench/checksums.py [--size-mib 2048] [--rounds 3] [--bin PATH]

One server per variant (loopback, its own root under /tmp), kept for all rounds; the rounds run
the variants interleaved so drifts of the machine hit all alike. Per upload: `curl -T` of one file
from /dev/shm, the server's utime+stime (/proc/PID/stat) before and after, wall time to the 226;
then `CKSM SHA256 0 -1` and `CKSM CRC32C 0 -1` on a new control connection (wall time and server
CPU), then DELE. Medians per variant are printed as a Markdown table and the raw records as JSON.

Variants: `none` (the default data path: splice for binary uploads), `none-fixed` (the
registered-buffer path checksums force, without digests: the cost of leaving splice),
`sha256`, `crc32c` (`--checksums`).
"""
import argparse
import ftplib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # utime, stime are fields 14 and 15 of stat; after the ")" they are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / TICK


def start(binary, root, extra):
    cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--root", root, "--user", "b",
           "--password", "b", "--threads", "1", "--tls", "off"] + extra
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("ringest: listening on "):
            port = int(line.rsplit(":", 1)[1])
            return p, port
    raise SystemExit(f"server did not start: {cmd}")


def cksm(port, algo, name):
    f = ftplib.FTP()
    f.connect("127.0.0.1", port, timeout=600)
    f.login("b", "b")
    t = time.monotonic()
    r = f.sendcmd(f"CKSM {algo} 0 -1 /{name}")
    dt = time.monotonic() - t
    f.quit()
    return dt, r.split()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "ringest"))
    a = ap.parse_args()
    src = f"/dev/shm/ringest-cksum-{a.size_mib}m.bin"
    if not os.path.exists(src) or os.path.getsize(src) != a.size_mib << 20:
        with open(src, "wb") as f:
            for _ in range(a.size_mib):
                f.write(os.urandom(1 << 20))
    variants = {
        "none": [],
        "none-fixed": ["--data-path", "fixed"],
        "sha256": ["--checksums", "sha256"],
        "crc32c": ["--checksums", "crc32c"],
    }
    base = tempfile.mkdtemp(prefix="ringest-cksum-bench-")
    servers = {}
    records = []
    try:
        for v, extra in variants.items():
            root = os.path.join(base, v)
            os.mkdir(root)
            servers[v] = start(a.bin, root, extra)
        for r in range(a.rounds):
            for v, (proc, port) in servers.items():
                name = f"r{r}.bin"
                c0, t0 = cpu_secs(proc.pid), time.monotonic()
                subprocess.run(["curl", "-sS", "--fail", "-T", src,
                                f"ftp://b:b@127.0.0.1:{port}/{name}"], check=True)
                t1, c1 = time.monotonic(), cpu_secs(proc.pid)
                rec = {"variant": v, "round": r, "upload_s": t1 - t0, "upload_cpu_s": c1 - c0}
                for algo in ("SHA256", "CRC32C"):
                    c2 = cpu_secs(proc.pid)
                    dt, hexd = cksm(port, algo, name)
                    rec[f"cksm_{algo.lower()}_s"] = dt
                    rec[f"cksm_{algo.lower()}_cpu_s"] = cpu_secs(proc.pid) - c2
                    rec[f"{algo.lower()}"] = hexd
                os.unlink(os.path.join(base, v, name))
                records.append(rec)
                print(json.dumps(rec), file=sys.stderr, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    gb = (a.size_mib << 20) / 1e9
    print(f"{a.size_mib} MiB per upload, {a.rounds} rounds interleaved, medians; CPU per GB = "
          "server utime+stime / (bytes / 1e9)\n")
    print("| variant | upload s | upload CPU s/GB | CKSM SHA256 s (CPU s) | CKSM CRC32C s (CPU s) "
          "| to verified 226 (upload + CKSM SHA256) s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for v in variants:
        rs = [x for x in records if x["variant"] == v]
        med = lambda k: statistics.median(x[k] for x in rs)
        print(f"| {v} | {med('upload_s'):.2f} | {med('upload_cpu_s') / gb:.3f} "
              f"| {med('cksm_sha256_s'):.3f} ({med('cksm_sha256_cpu_s'):.2f}) "
              f"| {med('cksm_crc32c_s'):.3f} ({med('cksm_crc32c_cpu_s'):.2f}) "
              f"| {med('upload_s') + med('cksm_sha256_s'):.2f} |")
    print("\n" + json.dumps(records))


if __name__ == "__main__":
    main()
