"""Shared helpers for the ftplib test scripts (run by tests/ftplib.rs)."""
import ftplib
import sys
import traceback

TIMEOUT = 60


class EpsvFTP(ftplib.FTP):
    """ftplib only uses EPSV on IPv6; force EPSV for passive transfers on IPv4."""

    def makepasv(self):
        host, port = ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        return host, port


def connect(host, port, user, password, mode="pasv"):
    cls = EpsvFTP if mode == "epsv" else ftplib.FTP
    ftp = cls()
    ftp.connect(host, int(port), timeout=TIMEOUT)
    ftp.login(user, password)
    ftp.set_pasv(mode != "active")
    return ftp


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_code(resp, code, what):
    expect(resp[:3] == str(code), f"{what}: expected reply {code}, got {resp!r}")


def expect_error(fn, code, what):
    """fn() must raise an ftplib error whose reply starts with `code` (int or str prefix)."""
    try:
        fn()
    except ftplib.all_errors as e:
        text = str(e)
        expect(text.startswith(str(code)), f"{what}: expected error {code}, got {text!r}")
        return
    raise AssertionError(f"{what}: expected error {code}, but it succeeded")


def main(fn):
    try:
        fn(sys.argv[1:])
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report everything
        traceback.print_exc()
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print("OK")
