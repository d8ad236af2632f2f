"""A stand-in FTP server that answers globus-url-copy just enough to make it upload in MODE E,
and writes every block header it receives (descriptor, count, offset) per data connection to
modee-wire.txt. For checking the wire format against the real client, not a server.

    python3 capture_modee.py &   # control on 127.0.0.1:25899, data on 127.0.0.1:25900
    globus-url-copy -fast -p 2 -tcp-bs 65536 file:///tmp/src.bin ftp://u:p@127.0.0.1:25899/x.bin
    # (-fast keeps the data connections open, so the client waits for a 226 that only comes once
    #  they close: stop it with a timeout once modee-wire.txt is written)
"""
import socket
import struct
import threading

ctl = socket.socket()
ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ctl.bind(("127.0.0.1", 25899))
ctl.listen(1)
data = socket.socket()
data.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
data.bind(("127.0.0.1", 25900))  # 101 * 256 + 44
data.listen(8)
out = open("modee-wire.txt", "w")
lock = threading.Lock()


def log(line):
    with lock:
        out.write(line + "\n")
        out.flush()


def reader(s, idx):
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    pos = 0
    while pos + 17 <= len(buf):
        desc, count, off = struct.unpack(">BQQ", buf[pos:pos + 17])
        log(f"conn {idx}: desc={desc:#04x} ({desc}) count={count} offset={off}")
        # An EOF block's offset field is an EOD count, and it carries no payload.
        pos += 17 + count
    log(f"conn {idx}: {len(buf)} bytes total, parsed to {pos}")


c, _ = ctl.accept()
f = c.makefile("rb")


def say(s):
    c.sendall((s + "\r\n").encode())


say("220 capture")
while True:
    line = f.readline()
    if not line:
        break
    cmd = line.decode().strip()
    log("> " + cmd)
    verb = cmd.split(" ")[0].upper()
    if verb == "USER":
        say("331 ok")
    elif verb == "PASS":
        say("230 ok")
    elif verb == "FEAT":
        say("211-Extensions supported\r\n PARALLEL\r\n ESTO\r\n ERET\r\n DCAU\r\n211 End.")
    elif verb == "SITE":
        say("250 OK.")
    elif verb in ("TYPE", "MODE", "ALLO", "OPTS", "DCAU", "SBUF"):
        say("200 ok")
    elif verb == "PASV":
        say("227 Entering Passive Mode (127,0,0,1,101,44)")
    elif verb == "STOR":
        say("150 go")
        data.settimeout(3)
        threads = []
        try:
            while True:
                s, _ = data.accept()
                t = threading.Thread(target=reader, args=(s, len(threads)))
                t.start()
                threads.append(t)
        except socket.timeout:
            pass
        for t in threads:
            t.join()
        say("226 done")
    elif verb == "QUIT":
        say("221 bye")
        break
    else:
        say("500 ?")
