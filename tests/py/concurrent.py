"""Usage: concurrent.py HOST PORT USER PASS ROOT SESSIONS FILES

SESSIONS threads, each its own ftplib session, each uploads FILES files (sizes
0..64 KiB, deterministic content) with storbinary, alternating PASV and EPSV, then
downloads one back. Afterwards every file under ROOT (the server's root directory on
disk) must be byte-exact.
"""
import io
import os
import random
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import connect, expect, expect_code, main  # noqa: E402


def content(session, index):
    rnd = random.Random(session * 100_003 + index)
    size = [0, 1, 65536][index] if index < 3 and session % 7 == 0 else rnd.randrange(0, 65537)
    return rnd.randbytes(size)


def run(args):
    if len(args) != 7:
        raise SystemExit(f"usage: {sys.argv[0]} HOST PORT USER PASS ROOT SESSIONS FILES")
    host, port, user, password, root = args[:5]
    sessions, files = int(args[5]), int(args[6])
    errors = []

    def worker(s):
        try:
            ftp = connect(host, port, user, password, "epsv" if s % 2 else "pasv")
            expect_code(ftp.sendcmd("TYPE I"), 200, "TYPE I")
            for i in range(files):
                data = content(s, i)
                resp = ftp.storbinary(f"STOR py-s{s:03}-f{i:02}.bin", io.BytesIO(data))
                expect_code(resp, 226, f"session {s} STOR #{i}")
            buf = io.BytesIO()
            ftp.retrbinary(f"RETR py-s{s:03}-f00.bin", buf.write)
            expect(buf.getvalue() == content(s, 0), f"session {s}: RETR returned different bytes")
            expect_code(ftp.quit(), 221, "QUIT")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"session {s}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    alive = [i for i, t in enumerate(threads) if t.is_alive()]
    expect(not alive, f"{len(alive)} sessions still running after 240 s: {alive[:10]}")
    expect(not errors, f"{len(errors)} sessions failed; first: {errors[:5]}")

    bad = []
    for s in range(sessions):
        for i in range(files):
            path = os.path.join(root, f"py-s{s:03}-f{i:02}.bin")
            try:
                with open(path, "rb") as f:
                    got = f.read()
            except OSError as e:
                bad.append(f"{path}: {e}")
                continue
            want = content(s, i)
            if got != want:
                off = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
                bad.append(f"{path}: size {len(got)} vs expected {len(want)}, first difference at {off}")
    expect(not bad, f"{len(bad)} files wrong on disk; first: {bad[:5]}")


main(run)
