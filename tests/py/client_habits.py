"""Usage: client_habits.py HOST PORT USER PASS CHECK

The exact replies behind every client habit of issue 10, through ftplib (run by the Rust tests in
tests/client_*.rs and tests/allo_truncation.rs, which prepare the files and check the disk):

  wildcards  NLST/LIST with *, ? and [...] (files prepared: g0..g2.bin, note.txt, .hidden.bin,
             x[1].bin, sub/s0.bin, sub/s1.bin, sub/deeper/)
  limit      NLST * on a server started with --max-list-entries 2 (same files)
  times      MFMT, MDTM with two arguments, both SITE UTIME forms, SITE CHMOD, SITE HELP, FEAT
  allo       ALLO followed by short, exact and longer uploads, APPE and REST
  replies    MODE E accepted, MODE Z/C 504, HOST after login, EPRT, a NUL byte, control characters in names
"""
import io
import socket
import sys
import time

from _common import connect, expect, expect_code, expect_error, main


def nlst(ftp, arg):
    return sorted(ftp.nlst(arg))


def check_wildcards(ftp):
    expect(nlst(ftp, "*.bin") == ["g0.bin", "g1.bin", "g2.bin", "x[1].bin"], f"NLST *.bin: {nlst(ftp, '*.bin')}")
    expect(nlst(ftp, "g?.bin") == ["g0.bin", "g1.bin", "g2.bin"], f"NLST g?.bin: {nlst(ftp, 'g?.bin')}")
    expect(nlst(ftp, "g[01].bin") == ["g0.bin", "g1.bin"], f"NLST g[01].bin: {nlst(ftp, 'g[01].bin')}")
    expect(nlst(ftp, "[!gx]*") == ["note.txt", "sub"], f"NLST [!gx]*: {nlst(ftp, '[!gx]*')}")
    # A name that is itself a pattern still lists as itself.
    expect("x[1].bin" in nlst(ftp, "x[1].bin"), f"NLST x[1].bin: {nlst(ftp, 'x[1].bin')}")
    # Names that can be fed back to RETR, as vsftpd answers.
    expect(nlst(ftp, "sub") == ["sub/deeper", "sub/s0.bin", "sub/s1.bin"], f"NLST sub: {nlst(ftp, 'sub')}")
    expect(nlst(ftp, "sub/*.bin") == ["sub/s0.bin", "sub/s1.bin"], f"NLST sub/*.bin: {nlst(ftp, 'sub/*.bin')}")
    for name in nlst(ftp, "sub/*.bin"):
        got = io.BytesIO()
        ftp.retrbinary("RETR " + name, got.write)
        expect(len(got.getvalue()) == 500, f"RETR {name}: {len(got.getvalue())} bytes")
    # A bare NLST keeps bare names; hidden files only for a pattern starting with a dot.
    expect("g0.bin" in ftp.nlst(), f"bare NLST: {ftp.nlst()}")
    expect(".hidden.bin" not in nlst(ftp, "*"), f"NLST * lists a hidden file: {nlst(ftp, '*')}")
    expect(nlst(ftp, ".*") == [".hidden.bin"], f"NLST .*: {nlst(ftp, '.*')}")
    # No match is an empty listing, as vsftpd gives; a missing directory is 550.
    expect(nlst(ftp, "*.nomatch") == [], f"NLST *.nomatch: {nlst(ftp, '*.nomatch')}")
    expect_code(ftp.lastresp, 226, "NLST *.nomatch final reply")
    expect_error(lambda: ftp.nlst("nodir/*.bin"), 550, "NLST nodir/*.bin")
    expect_error(lambda: ftp.nlst("note.txt/*"), 550, "NLST note.txt/*")
    lines = []
    ftp.retrlines("LIST *.bin", lines.append)
    expect(len(lines) == 4 and all(l.startswith("-") for l in lines), f"LIST *.bin: {lines}")
    expect(sorted(l.split()[-1] for l in lines) == ["g0.bin", "g1.bin", "g2.bin", "x[1].bin"], f"LIST *.bin: {lines}")
    lines = []
    ftp.retrlines("LIST -l sub/s?.bin", lines.append)
    expect(len(lines) == 2, f"LIST -l sub/s?.bin: {lines}")
    # A hostile pattern answers at once (no exponential matching) and matches nothing.
    t = time.monotonic()
    expect(nlst(ftp, "*a" * 100 + "b") == [], "hostile pattern matched")
    expect(time.monotonic() - t < 5, f"hostile pattern took {time.monotonic() - t:.1f}s")
    expect_error(lambda: ftp.nlst("*" * 300), 553, "NLST with a 300-byte pattern")


def check_limit(ftp):
    names = ftp.nlst("*")
    expect(len(names) == 2, f"NLST * with --max-list-entries 2 returned {names}")
    expect(len(ftp.nlst("sub")) == 2, f"NLST sub: {ftp.nlst('sub')}")


def mdtm(ftp, name):
    return ftp.sendcmd("MDTM " + name)


def check_times(ftp):
    ftp.storbinary("STOR t.bin", io.BytesIO(b"x" * 100))
    ftp.mkd("tdir")
    resp = ftp.sendcmd("MFMT 20200304050607 t.bin")
    expect(resp == "213 Modify=20200304050607; /t.bin", f"MFMT reply: {resp!r}")
    expect(mdtm(ftp, "t.bin") == "213 20200304050607", f"MDTM after MFMT: {mdtm(ftp, 't.bin')}")
    resp = ftp.sendcmd("MFMT 20200304050607.250 tdir")
    expect(resp == "213 Modify=20200304050607; /tdir", f"MFMT on a directory: {resp!r}")
    resp = ftp.sendcmd("MDTM 20190102030405 t.bin")
    expect(resp == "213 Modify=20190102030405; /t.bin", f"MDTM with two arguments: {resp!r}")
    expect(mdtm(ftp, "t.bin") == "213 20190102030405", f"MDTM after MDTM-set: {mdtm(ftp, 't.bin')}")
    resp = ftp.sendcmd("SITE UTIME 20180102030405 t.bin")
    expect(resp == "200 SITE UTIME command successful.", f"SITE UTIME (2 args): {resp!r}")
    expect(mdtm(ftp, "t.bin") == "213 20180102030405", f"after SITE UTIME: {mdtm(ftp, 't.bin')}")
    resp = ftp.sendcmd("SITE UTIME t.bin 20170102030405 20170102030405 20170102030405 UTC")
    expect(resp == "200 SITE UTIME command successful.", f"SITE UTIME (5 args): {resp!r}")
    expect(mdtm(ftp, "t.bin") == "213 20170102030405", f"after SITE UTIME 5: {mdtm(ftp, 't.bin')}")
    expect_error(lambda: ftp.sendcmd("MFMT 20201301000000 t.bin"), 501, "MFMT with month 13")
    expect_error(lambda: ftp.sendcmd("MFMT 20200101000000 missing.bin"), 550, "MFMT on a missing file")
    expect_error(lambda: ftp.sendcmd("SITE UTIME tomorrow t.bin"), 501, "SITE UTIME with a bad time")
    resp = ftp.sendcmd("SITE CHMOD 640 t.bin")
    expect(resp == "200 SITE CHMOD command ok (mode 0640).", f"SITE CHMOD: {resp!r}")
    resp = ftp.sendcmd("SITE CHMOD 4755 tdir")
    expect(resp == "200 SITE CHMOD command ok (mode 0755).", f"SITE CHMOD with setuid: {resp!r}")
    expect_error(lambda: ftp.sendcmd("SITE CHMOD 999 t.bin"), 501, "SITE CHMOD 999")
    expect_error(lambda: ftp.sendcmd("SITE CHMOD 644 missing.bin"), 550, "SITE CHMOD on a missing file")
    expect_error(lambda: ftp.sendcmd("SITE FROB x"), 502, "SITE FROB")
    help_site = ftp.sendcmd("HELP SITE")
    expect(help_site.startswith("214") and "UTIME" in help_site and "CHMOD" in help_site, help_site)
    feat = ftp.sendcmd("FEAT")
    expect(" MFMT" in feat.splitlines(), f"FEAT lacks MFMT: {feat!r}")


def upload(ftp, cmd, data, allo=None):
    if allo is not None:
        expect_code(ftp.sendcmd(f"ALLO {allo}"), 200, f"ALLO {allo}")
    return ftp.storbinary(cmd, io.BytesIO(data))


def check_allo(ftp):
    ftp.voidcmd("TYPE I")
    try:
        upload(ftp, "STOR short.bin", b"s" * 500, allo=1000)
        raise AssertionError("STOR of 500 bytes after ALLO 1000 succeeded")
    except Exception as e:  # noqa: BLE001 - ftplib raises error_temp
        text = str(e)
        expect(text.startswith("426") and "500 of the 1000 bytes" in text, f"short upload: {text!r}")
    resp = upload(ftp, "STOR exact.bin", b"e" * 1000, allo=1000)
    expect_code(resp, 226, "STOR of exactly the ALLO size")
    resp = upload(ftp, "STOR longer.bin", b"l" * 700, allo=100)
    expect_code(resp, 226, "STOR longer than the ALLO size")
    resp = upload(ftp, "STOR plain.bin", b"p" * 300)
    expect_code(resp, 226, "STOR without ALLO")
    # APPE continues the visible file; a short append is cut back to the old size.
    upload(ftp, "STOR log.bin", b"a" * 500)
    expect_error(lambda: upload(ftp, "APPE log.bin", b"b" * 700, allo=2000), 426, "short APPE")
    expect(ftp.size("log.bin") == 500, f"log.bin after a short APPE: {ftp.size('log.bin')}")
    # REST + STOR: ALLO is the size of the whole file.
    ftp.sendcmd("ALLO 1000")
    resp = ftp.storbinary("STOR log.bin", io.BytesIO(b"c" * 500), rest=500)
    expect_code(resp, 226, "REST 500 + STOR of 500 with ALLO 1000")
    expect(ftp.size("log.bin") == 1000, f"log.bin after REST: {ftp.size('log.bin')}")
    # TYPE A changes sizes in transit, so it is not checked.
    ftp.voidcmd("TYPE A")
    expect_code(ftp.sendcmd("ALLO 1000"), 200, "ALLO in TYPE A")
    resp = ftp.storlines("STOR ascii.txt", io.BytesIO(b"line\n" * 10))
    expect_code(resp, 226, "TYPE A upload shorter than ALLO")
    ftp.voidcmd("TYPE I")
    # The next upload after a failed one is not affected by the old ALLO.
    expect_code(upload(ftp, "STOR after.bin", b"z" * 10), 226, "STOR after the short one")


def check_replies(ftp):
    expect_code(ftp.sendcmd("MODE E"), 200, "MODE E (GridFTP extended block mode)")
    for mode in ("Z", "C"):
        try:
            ftp.sendcmd(f"MODE {mode}")
            raise AssertionError(f"MODE {mode} succeeded")
        except Exception as e:  # noqa: BLE001
            text = str(e)
            expect(text == f"504 MODE {mode} not implemented; available modes: S (stream), B (block) and E (extended block).", f"MODE {mode}: {text!r}")
    expect_code(ftp.sendcmd("MODE S"), 200, "MODE S")
    expect_error(lambda: ftp.sendcmd("HOST ftp.example.com"), 503, "HOST after login")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    resp = ftp.sendcmd(f"EPRT |1|127.0.0.1|{port}|")
    expect(resp == "200 EPRT command successful. Consider using EPSV.", f"EPRT: {resp!r}")
    resp = ftp.sendcmd("PORT 127,0,0,1,%d,%d" % (port >> 8, port & 255))
    expect(resp == "200 PORT command successful. Consider using PASV.", f"PORT: {resp!r}")
    listener.close()
    try:
        ftp.sendcmd("NOOP\0x")
        raise AssertionError("a NUL byte was accepted")
    except Exception as e:  # noqa: BLE001
        expect(str(e) == "501 Command contains a NUL byte; refused.", f"NUL: {e!r}")
    name = "ctl\x1b[31mred\x07"
    resp = ftp.sendcmd("MKD " + name)
    expect(resp == '257 "/ctl\\x1b[31mred\\x07" created.', f"MKD with control characters: {resp!r}")
    expect("\x1b" not in resp and "\x07" not in resp, repr(resp))
    expect_code(ftp.sendcmd("CWD " + name), 250, "CWD into it")
    resp = ftp.sendcmd("PWD")
    expect(resp == '257 "/ctl\\x1b[31mred\\x07" is the current directory.', f"PWD: {resp!r}")
    ftp.cwd("/")
    resp = ftp.sendcmd("MLST " + name)
    expect("\x1b" not in resp and "\\x1b" in resp, f"MLST: {resp!r}")


def run(args):
    host, port, user, password, check = args[:5]
    ftp = connect(host, port, user, password)
    {
        "wildcards": check_wildcards,
        "limit": check_limit,
        "times": check_times,
        "allo": check_allo,
        "replies": check_replies,
    }[check](ftp)
    ftp.quit()


if __name__ == "__main__":
    main(run)
