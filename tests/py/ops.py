"""Usage: ops.py HOST PORT USER PASS

Directory and housekeeping operations through ftplib: pwd, mkd, cwd, cdup, nlst, dir
(LIST), size, delete, upload into a subdirectory, error replies (550 missing file, 530
bad password), FEAT/SYST/NOOP, and an upload in active mode.
"""
import ftplib
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import connect, expect, expect_code, expect_error, main, TIMEOUT  # noqa: E402


def run(args):
    if len(args) != 4:
        raise SystemExit(f"usage: {sys.argv[0]} HOST PORT USER PASS")
    host, port, user, password = args

    # Bad password -> 530.
    bad = ftplib.FTP()
    bad.connect(host, int(port), timeout=TIMEOUT)
    expect(bad.getwelcome().startswith("220"), f"greeting: {bad.getwelcome()!r}")
    expect_error(lambda: bad.login(user, password + "-wrong"), 530, "login with a wrong password")
    bad.close()

    ftp = connect(host, port, user, password, "pasv")
    expect_code(ftp.sendcmd("NOOP"), 200, "NOOP")
    expect_code(ftp.sendcmd("SYST"), 215, "SYST")
    expect_code(ftp.sendcmd("FEAT"), 211, "FEAT")
    expect(ftp.pwd() == "/", f"pwd() after login: {ftp.pwd()!r}")

    expect(ftp.mkd("pydir") in ("/pydir", "pydir"), "mkd('pydir') returned an unexpected path")
    ftp.cwd("pydir")
    expect(ftp.pwd() == "/pydir", f"pwd() after cwd: {ftp.pwd()!r}")
    payload = bytes((i * 7 + 3) % 256 for i in range(100_000))
    expect_code(ftp.storbinary("STOR inner.bin", io.BytesIO(payload)), 226, "STOR inner.bin")
    expect(ftp.size("inner.bin") == len(payload), "SIZE inner.bin")
    buf = io.BytesIO()
    ftp.retrbinary("RETR /pydir/inner.bin", buf.write)
    expect(buf.getvalue() == payload, "RETR by absolute path returned different bytes")
    ftp.sendcmd("CDUP")
    expect(ftp.pwd() == "/", f"pwd() after CDUP: {ftp.pwd()!r}")

    names = ftp.nlst()
    expect("pydir" in names, f"nlst() lacks pydir: {names!r}")
    inner = ftp.nlst("pydir")
    expect(any(n.endswith("inner.bin") for n in inner), f"nlst('pydir') lacks inner.bin: {inner!r}")
    lines = []
    ftp.dir(lines.append)
    expect(any(line.endswith(" pydir") and line.startswith("d") for line in lines), f"LIST lacks dir pydir: {lines!r}")

    expect_error(lambda: ftp.retrbinary("RETR missing.bin", lambda b: None), 550, "RETR missing.bin")
    expect_error(lambda: ftp.size("missing.bin"), 550, "SIZE missing.bin")
    expect_error(lambda: ftp.cwd("missing-dir"), 550, "CWD missing-dir")
    expect_error(lambda: ftp.delete("missing.bin"), 550, "DELE missing.bin")
    expect_error(lambda: ftp.sendcmd("XYZZY"), "50", "unknown command")

    resp = ftp.delete("pydir/inner.bin")
    expect_code(resp, 250, "DELE pydir/inner.bin")
    expect("inner.bin" not in " ".join(ftp.nlst("pydir")), "file still listed after DELE")

    # Active mode upload + download.
    ftp.set_pasv(False)
    expect_code(ftp.storbinary("STOR active.bin", io.BytesIO(payload[:4321])), 226, "STOR active.bin (active)")
    buf = io.BytesIO()
    ftp.retrbinary("RETR active.bin", buf.write)
    expect(buf.getvalue() == payload[:4321], "active-mode RETR returned different bytes")
    expect_code(ftp.quit(), 221, "QUIT")


main(run)
