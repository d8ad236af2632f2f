"""MODE B (block mode) edge cases against a running ringest, with raw sockets.

Usage: modeb_edge.py HOST PORT USER PASS ROOT
Exits non-zero with a message on the first failure.
"""
import os
import socket
import struct
import sys
import time

HOST, PORT, USER, PASS, ROOT = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
EOF_D, RESTART_D = 64, 16


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


class Ctl:
    def __init__(self):
        self.s = socket.create_connection((HOST, PORT), timeout=20)
        self.f = self.s.makefile("rb")
        self.expect(220)
        self.cmd("USER " + USER, 331)
        self.cmd("PASS " + PASS, 230)
        self.cmd("TYPE I", 200)

    def reply(self):
        line = self.f.readline().decode()
        if not line.endswith("\r\n"):
            fail("reply line without CRLF: %r" % line)
        code = line[:3]
        while line[3:4] == "-":
            line = self.f.readline().decode()
            if line[:3] == code and line[3:4] == " ":
                break
        return int(code), line.strip()

    def expect(self, *codes):
        code, line = self.reply()
        if code not in codes:
            fail("expected %s, got %r" % (codes, line))
        return line

    def cmd(self, text, *codes):
        self.s.sendall((text + "\r\n").encode())
        return self.expect(*codes)

    def pasv(self):
        line = self.cmd("PASV", 227)
        nums = line[line.index("(") + 1:line.index(")")].split(",")
        return socket.create_connection((HOST, int(nums[4]) * 256 + int(nums[5])), timeout=20)


def blocks(data, last_desc=EOF_D, size=65535):
    out = b""
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    for i, c in enumerate(chunks):
        desc = last_desc if i == len(chunks) - 1 else 0
        out += struct.pack(">BH", desc, len(c)) + c
    return out


def on_disk(name):
    with open(os.path.join(ROOT, name), "rb") as f:
        return f.read()


def visible(name):
    return os.path.exists(os.path.join(ROOT, name))


def no_temp_files():
    return [n for n in os.listdir(ROOT) if n.startswith(".ringest-") and "partial" not in n]


def main():
    c = Ctl()
    c.cmd("MODE B", 200)
    d = c.pasv()
    files = {
        "b1": os.urandom(200_000),
        "b-empty": b"",
        "b-exact": os.urandom(65535 * 2),
        "b-small": b"x",
    }
    first = True
    for name, data in files.items():
        c.s.sendall(("STOR " + name + "\r\n").encode())
        c.expect(150 if first else 125)
        first = False
        d.sendall(blocks(data))
        c.expect(250)
        if on_disk(name) != data:
            fail("%s differs on disk" % name)

    # A header and payload split across many small TCP segments.
    data = os.urandom(5000)
    wire = blocks(data, size=1000)
    c.s.sendall(b"STOR b-split\r\n")
    c.expect(125)
    d.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, 40):
        d.sendall(wire[i:i + 1])
        time.sleep(0.002)
    d.sendall(wire[40:])
    c.expect(250)
    if on_disk("b-split") != data:
        fail("split headers: content differs")

    # Separate EOF block (count 0) after data blocks, and an EOR bit that must not change the data.
    data = os.urandom(70000)
    c.s.sendall(b"STOR b-eofblock\r\n")
    c.expect(125)
    d.sendall(struct.pack(">BH", 128, 3) + data[:3] + blocks(data[3:], last_desc=0) + struct.pack(">BH", EOF_D, 0))
    c.expect(250)
    if on_disk("b-eofblock") != data:
        fail("separate EOF block: content differs")

    # Restart markers are answered with 110 MARK before the final reply.
    part1, part2 = os.urandom(100_000), os.urandom(50_000)
    c.s.sendall(b"STOR b-mark\r\n")
    c.expect(125)
    d.sendall(blocks(part1, last_desc=0) + struct.pack(">BH", RESTART_D, 2) + b"R1" + blocks(part2))
    line = c.expect(110)
    if "R1" not in line or str(len(part1)) not in line:
        fail("110 MARK reply should name the marker and offset %d: %r" % (len(part1), line))
    c.expect(250)
    if on_disk("b-mark") != part1 + part2:
        fail("marker file differs")

    # Pipelining: the next STOR goes out with the last block, before the 250 is read (the server
    # answers the 250 and the next 125 in one send). Replies stay in command order.
    p1, p2 = os.urandom(10_000), os.urandom(3)
    c.s.sendall(b"STOR p1\r\n")
    c.expect(125)
    d.sendall(blocks(p1))
    c.s.sendall(b"STOR p2\r\n")
    c.expect(250)
    c.expect(125)
    d.sendall(blocks(p2))
    c.expect(250)
    if on_disk("p1") != p1 or on_disk("p2") != p2:
        fail("pipelined STORs: content differs")

    # Commands queued during a transfer, one of them refused: the 250, the other replies and the
    # next 125 come in command order, and the kept connection still carries the file.
    p3, p4 = os.urandom(70_000), os.urandom(5)
    c.s.sendall(b"STOR p3\r\n")
    c.expect(125)
    c.s.sendall(b"SIZE no-such-file\r\nNOOP\r\nSTOR p4\r\n")
    time.sleep(0.1)  # the three lines wait for p3, whose data follows them
    d.sendall(blocks(p3))
    c.expect(250)
    c.expect(550)
    c.expect(200)
    c.expect(125)
    d.sendall(blocks(p4))
    c.expect(250)
    if on_disk("p3") != p3 or on_disk("p4") != p4:
        fail("pipelined STORs around a refusal: wrong files")

    # RETR in MODE B over the same connection decodes to the file.
    c.s.sendall(b"RETR b1\r\n")
    c.expect(125)
    got = b""
    while True:
        h = b""
        while len(h) < 3:
            h += d.recv(3 - len(h))
        desc, n = struct.unpack(">BH", h)
        p = b""
        while len(p) < n:
            p += d.recv(n - len(p))
        got += p
        if desc & EOF_D:
            break
    c.expect(250)
    if got != files["b1"]:
        fail("RETR in MODE B differs")

    # The client drops the connection after a restart marker, without EOF: 426, nothing under the
    # final name; REST with the marker's offset resumes into the same name.
    c.s.sendall(b"STOR b-resume\r\n")
    c.expect(125)
    d.sendall(blocks(part1, last_desc=0) + struct.pack(">BH", RESTART_D, 2) + b"M1" + struct.pack(">BH", 0, 1000) + b"z" * 10)
    time.sleep(0.2)
    d.close()
    codes = []
    while True:
        code, line = c.reply()
        codes.append(code)
        if code >= 200:
            break
    if codes[-1] != 426 or 110 not in codes:
        fail("drop without EOF after a marker: expected 110 ... 426, got %s" % codes)
    if visible("b-resume"):
        fail("an incomplete MODE B file is visible under its final name")
    d = c.pasv()
    c.cmd("REST %d" % len(part1), 350)
    c.s.sendall(b"STOR b-resume\r\n")
    c.expect(150)
    d.sendall(blocks(part2))
    c.expect(250)
    if on_disk("b-resume") != part1 + part2:
        fail("resumed file differs (len %d)" % len(on_disk("b-resume")))

    # Drop without EOF and without a marker: 426, nothing lands, no temp file left.
    c.s.sendall(b"STOR b-dropped\r\n")
    c.expect(125)
    d.sendall(struct.pack(">BH", 0, 100) + b"y" * 50)
    time.sleep(0.1)
    d.close()
    c.expect(426)
    time.sleep(0.2)
    if visible("b-dropped") or no_temp_files():
        fail("dropped upload left %s" % (no_temp_files() or "b-dropped"))

    # After the drop the connection is gone: STOR needs a new PASV.
    c.cmd("STOR b-none", 425)

    # A new PASV ends a kept connection (the old one is closed by the server).
    d = c.pasv()
    c.s.sendall(b"STOR b-k\r\n")
    c.expect(150)
    d.sendall(blocks(b"k"))
    c.expect(250)
    d2 = c.pasv()
    d.settimeout(5)
    if d.recv(1) != b"":
        fail("old data connection should be closed after a new PASV")
    # MODE S switches back: the connection is closed and stream uploads work.
    c.cmd("MODE S", 200)
    d2.close()  # connected to the PASV port but never used by a transfer
    d3 = c.pasv()
    c.s.sendall(b"STOR s-after\r\n")
    c.expect(150)
    d3.sendall(b"stream data")
    d3.close()
    c.expect(226)
    if on_disk("s-after") != b"stream data":
        fail("stream upload after MODE S differs")
    c.cmd("QUIT", 221)
    print("modeb edge cases ok")


main()
