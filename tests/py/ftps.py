"""FTPS (RFC 4217) with Python's ftplib.FTP_TLS against a running ringest.

Usage: ftps.py HOST PORT USER PASS CAFILE ROOT PART
PART is one of: resume, no_resume, truncate, modeb, garbage_hello, stalled_handshake, order.
Prints OK and exits 0, or prints FAIL and exits 1.
"""
import ftplib
import io
import os
import socket
import ssl
import struct
import sys
import time

HOST, PORT, USER, PASS, CAFILE, ROOT, PART = sys.argv[1:8]
PORT = int(PORT)
TIMEOUT = 30


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def context():
    ctx = ssl.create_default_context(cafile=CAFILE)
    return ctx


class ResumingFTP_TLS(ftplib.FTP_TLS):
    """ftplib's FTP_TLS does not resume the control connection's TLS session on data
    connections, which servers that check the data connection's origin require (vsftpd's
    require_ssl_reuse, ringest's default). The fix is two lines: pass the session on."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def login(cls):
    ftp = cls(context=context(), timeout=TIMEOUT)
    ftp.connect(HOST, PORT)
    ftp.login(USER, PASS)  # FTP_TLS.login sends AUTH TLS first
    ftp.prot_p()
    return ftp


def part_resume():
    ftp = login(ResumingFTP_TLS)
    data = os.urandom(3 * 1024 * 1024 + 17)
    for i in range(3):
        ftp.storbinary(f"STOR py-tls-{i}.bin", io.BytesIO(data))
    back = io.BytesIO()
    ftp.retrbinary("RETR py-tls-1.bin", back.write)
    if back.getvalue() != data:
        fail("download differs")
    names = ftp.nlst()
    if sorted(n for n in names if n.startswith("py-tls-")) != [f"py-tls-{i}.bin" for i in range(3)]:
        fail(f"NLST over TLS: {names}")
    for i in range(3):
        with open(os.path.join(ROOT, f"py-tls-{i}.bin"), "rb") as f:
            if f.read() != data:
                fail(f"py-tls-{i}.bin differs on disk")
    ftp.quit()


def part_no_resume():
    """Plain FTP_TLS: data connections do a full handshake. Expect 522 (refused) when the server
    requires resumption; argv[8] == 'accepted' when it does not."""
    expect_accepted = len(sys.argv) > 8 and sys.argv[8] == "accepted"
    ftp = login(ftplib.FTP_TLS)
    try:
        ftp.storbinary("STOR py-noresume.bin", io.BytesIO(b"x" * 1000))
    except ftplib.error_perm as e:
        if expect_accepted:
            fail(f"refused although resumption is not required: {e}")
        if not str(e).startswith("522"):
            fail(f"expected 522, got {e}")
        if os.path.exists(os.path.join(ROOT, "py-noresume.bin")):
            fail("a refused data connection landed a file")
        # The session is still usable.
        ftp.voidcmd("NOOP")
        ftp.quit()
        return
    except (ssl.SSLError, OSError, EOFError) as e:
        if expect_accepted:
            fail(f"failed although resumption is not required: {e!r}")
        # The server closed the data connection under ftplib's feet; its reply is still queued.
        try:
            resp = ftp.getresp()
        except ftplib.error_perm as e2:
            resp = str(e2)
        if not resp.startswith("522"):
            fail(f"expected 522 after {e!r}, got {resp!r}")
        ftp.voidcmd("NOOP")
        ftp.quit()
        return
    if not expect_accepted:
        fail("a data connection that did not resume was accepted")
    ftp.quit()


def part_truncate():
    """A protected upload whose data connection closes without close_notify: 426, nothing lands."""
    ftp = login(ResumingFTP_TLS)
    ftp.voidcmd("TYPE I")
    conn, _ = ftp.ntransfercmd("STOR py-cut.bin")
    conn.sendall(os.urandom(200_000))
    # Close the TCP connection under TLS: no close_notify (what a killed client does).
    raw = socket.socket(fileno=conn.detach())
    raw.close()
    try:
        resp = ftp.voidresp()
        fail(f"expected 426, got {resp}")
    except ftplib.error_temp as e:
        if not str(e).startswith("426"):
            fail(f"expected 426, got {e}")
    if os.path.exists(os.path.join(ROOT, "py-cut.bin")):
        fail("the truncated upload landed")
    # And a complete one after it lands.
    ftp.storbinary("STOR py-after.bin", io.BytesIO(b"complete"))
    with open(os.path.join(ROOT, "py-after.bin"), "rb") as f:
        if f.read() != b"complete":
            fail("upload after a truncated one differs")
    ftp.quit()


def block(desc, payload):
    return struct.pack(">BH", desc, len(payload)) + payload


def part_modeb():
    """Several files over one protected MODE B data connection."""
    ftp = login(ResumingFTP_TLS)
    ftp.voidcmd("TYPE I")
    ftp.voidcmd("MODE B")
    files = {f"py-b-{i}.bin": os.urandom(n) for i, n in enumerate([0, 1, 70_000, 300_001])}
    conn = None
    for name, data in files.items():
        if conn is None:
            conn, _ = ftp.ntransfercmd(f"STOR {name}")
        else:
            resp = ftp.sendcmd(f"STOR {name}")
            if not resp.startswith("125"):
                fail(f"expected 125 on the kept connection, got {resp}")
        out = bytearray()
        for off in range(0, len(data), 65535):
            out += block(0, data[off:off + 65535])
        out += block(64, b"")
        conn.sendall(bytes(out))
        resp = ftp.getresp()
        if not resp.startswith("250"):
            fail(f"expected 250 (kept open) for {name}, got {resp}")
    for name, data in files.items():
        with open(os.path.join(ROOT, name), "rb") as f:
            if f.read() != data:
                fail(f"{name} differs on disk")
    ftp.voidcmd("MODE S")
    conn.close()
    ftp.quit()


def raw_control():
    s = socket.create_connection((HOST, PORT), timeout=TIMEOUT)
    f = s.makefile("rb")
    if not f.readline().startswith(b"220"):
        fail("no greeting")
    return s, f


def part_garbage_hello():
    """Garbage instead of a ClientHello: the server closes the connection (it cannot answer in
    TLS to something that is not TLS), promptly, and keeps serving others."""
    s, f = raw_control()
    s.sendall(b"AUTH TLS\r\n")
    if not f.readline().startswith(b"234"):
        fail("no 234")
    s.sendall(b"USER anonymous\r\nPASS x\r\n" + b"\x00" * 64)
    t0 = time.time()
    try:
        rest = s.recv(4096)
        while rest and time.time() - t0 < 10:
            rest = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        rest = b""
    if time.time() - t0 > 10:
        fail("the server did not close after garbage")
    s.close()
    ftp = login(ResumingFTP_TLS)
    ftp.voidcmd("NOOP")
    ftp.quit()


def part_stalled_handshake():
    """AUTH TLS, then nothing: cut by the login timeout (the test runs the server with 2 s)."""
    s, f = raw_control()
    s.sendall(b"AUTH TLS\r\n")
    if not f.readline().startswith(b"234"):
        fail("no 234")
    t0 = time.time()
    s.settimeout(20)
    try:
        got = s.recv(4096)
    except ConnectionResetError:
        got = b""
    except socket.timeout:
        fail("a stalled handshake was not cut within 20 s")
    if got:
        fail(f"expected a close, got {got!r}")
    took = time.time() - t0
    if took > 8:
        fail(f"cut after {took:.1f} s, login timeout is 2 s")


def part_order():
    """PBSZ/PROT before AUTH, PROT before PBSZ, a second AUTH inside TLS, CCC."""
    s, f = raw_control()

    def cmd(line):
        s.sendall(line.encode() + b"\r\n")
        return f.readline().decode()

    for line, code in [("PBSZ 0", "503"), ("PROT P", "503"), ("CCC", "534")]:
        r = cmd(line)
        if not r.startswith(code):
            fail(f"{line}: expected {code}, got {r!r}")
    s.close()
    ftp = ftplib.FTP_TLS(context=context(), timeout=TIMEOUT)
    ftp.connect(HOST, PORT)
    ftp.auth()
    for line, code in [("PROT P", "503"), ("AUTH TLS", "503"), ("CCC", "534"), ("PBSZ 0", "200"), ("PROT P", "200")]:
        try:
            r = ftp.sendcmd(line)
        except ftplib.all_errors as e:
            r = str(e)
        if not r.startswith(code):
            fail(f"{line} under TLS: expected {code}, got {r!r}")
    ftp.login(USER, PASS)
    ftp.quit()


PARTS = {
    "resume": part_resume,
    "no_resume": part_no_resume,
    "truncate": part_truncate,
    "modeb": part_modeb,
    "garbage_hello": part_garbage_hello,
    "stalled_handshake": part_stalled_handshake,
    "order": part_order,
}

if __name__ == "__main__":
    PARTS[PART]()
    print("OK")
