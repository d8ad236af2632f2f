"""Usage: roundtrip.py HOST PORT USER PASS MODE LOCAL_DIR OUT_DIR NAME...

MODE is pasv, epsv or active. Uploads each LOCAL_DIR/NAME with storbinary, checks
SIZE, downloads it to OUT_DIR/NAME with retrbinary and checks that nlst() lists every
NAME. The Rust side compares the files byte for byte.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import connect, expect, expect_code, main  # noqa: E402


def run(args):
    if len(args) < 8:
        raise SystemExit(f"usage: {sys.argv[0]} HOST PORT USER PASS MODE LOCAL_DIR OUT_DIR NAME...")
    host, port, user, password, mode, local_dir, out_dir = args[:7]
    names = args[7:]
    expect(mode in ("pasv", "epsv", "active"), f"bad mode {mode!r}")
    ftp = connect(host, port, user, password, mode)
    expect_code(ftp.sendcmd("TYPE I"), 200, "TYPE I")
    for name in names:
        src = os.path.join(local_dir, name)
        with open(src, "rb") as f:
            resp = ftp.storbinary(f"STOR {name}", f, blocksize=65536)
        expect_code(resp, 226, f"STOR {name} final reply")
        size = ftp.size(name)
        expect(size == os.path.getsize(src), f"SIZE {name}: {size} != local {os.path.getsize(src)}")
        with open(os.path.join(out_dir, name), "wb") as out:
            resp = ftp.retrbinary(f"RETR {name}", out.write, blocksize=65536)
        expect_code(resp, 226, f"RETR {name} final reply")
    listed = ftp.nlst()
    for name in names:
        expect(name in listed or "/" + name in listed, f"nlst() does not list {name!r}: {listed!r}")
    resp = ftp.quit()
    expect_code(resp, 221, "QUIT")


main(run)
