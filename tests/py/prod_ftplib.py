"""Production features through Python's ftplib (run by tests/production_clients.rs):
MLSD facts, MLST, storlines/retrlines in TYPE A, UTF-8 names ("main"), or mlsd(facts=...)
which needs OPTS MLST ("opts-mlst").

usage: prod_ftplib.py HOST PORT USER PASS [main|opts-mlst]
"""
import io

from _common import connect, expect, expect_code, main


def run(args):
    host, port, user, password = args[:4]
    what = args[4] if len(args) > 4 else "main"
    ftp = connect(host, port, user, password)
    if what == "opts-mlst":
        return opts_mlst(ftp)
    expect(ftp.encoding.lower().replace("-", "") == "utf8", f"ftplib encoding {ftp.encoding}")

    data = bytes(range(256)) * 48 + b"x" * 57  # 12345 bytes
    expect_code(ftp.storbinary("STOR mlsd.bin", io.BytesIO(data)), 226, "STOR mlsd.bin")
    ftp.mkd("mlsd-dir")

    entries = dict(ftp.mlsd())
    expect("mlsd.bin" in entries and "mlsd-dir" in entries, f"MLSD entries: {sorted(entries)}")
    f = entries["mlsd.bin"]
    for fact in ("type", "size", "modify", "perm", "unique"):
        expect(fact in f, f"MLSD mlsd.bin lacks {fact}: {f}")
    expect(f["type"] == "file", f"type of mlsd.bin: {f}")
    expect(f["size"] == str(len(data)), f"size of mlsd.bin: {f}")
    expect(len(f["modify"]) >= 14 and f["modify"][:14].isdigit(), f"modify of mlsd.bin: {f}")
    d = entries["mlsd-dir"]
    expect(d["type"] == "dir", f"type of mlsd-dir: {d}")
    expect(f["unique"] != d["unique"], f"unique facts collide: {f} / {d}")
    for name, facts in entries.items():
        expect(name not in ("", None), f"empty name in MLSD: {entries}")
        expect("\r" not in name and "\n" not in name, f"bad name {name!r}")

    resp = ftp.sendcmd("MLST mlsd.bin")
    lines = resp.split("\n")
    expect(lines[0].startswith("250-") and lines[-1].startswith("250"), f"MLST reply: {resp!r}")
    body = [l for l in lines[1:-1]]
    expect(len(body) == 1 and body[0].startswith(" ") and not body[0].startswith("  "), f"MLST facts line: {resp!r}")
    expect(f"size={len(data)};" in body[0].lower(), f"MLST size: {body[0]!r}")

    # TYPE A: storlines sends CRLF; the server stores LF; retrlines gets the lines back.
    text = b"first line\nsecond line\n\nfourth line\n"
    expect_code(ftp.storlines("STOR text.txt", io.BytesIO(text)), 226, "storlines")
    got = []
    expect_code(ftp.retrlines("RETR text.txt", got.append), 226, "retrlines")
    expect(got == ["first line", "second line", "", "fourth line"], f"retrlines: {got!r}")

    # UTF-8 and spaces.
    name = "ünïcödé näme ✓.txt"
    expect_code(ftp.storbinary("STOR " + name, io.BytesIO(b"utf8 content")), 226, "STOR utf-8 name")
    expect(name in ftp.nlst(), f"NLST lacks {name!r}: {ftp.nlst()}")
    buf = io.BytesIO()
    ftp.retrbinary("RETR " + name, buf.write)
    expect(buf.getvalue() == b"utf8 content", "RETR utf-8 name")
    expect(name in dict(ftp.mlsd()), "MLSD lacks the utf-8 name")
    ftp.voidcmd("TYPE I")
    expect(ftp.size("mlsd.bin") == len(data), "SIZE mlsd.bin")
    ftp.quit()


def opts_mlst(ftp):
    """Selecting facts (OPTS MLST, RFC 3659 7.9) as ftplib does for mlsd(facts=...)."""
    data = b"y" * 4321
    expect_code(ftp.storbinary("STOR sel.bin", io.BytesIO(data)), 226, "STOR sel.bin")
    sel = dict(ftp.mlsd(facts=["type", "size"]))
    expect(sel["sel.bin"].get("size") == str(len(data)), f"mlsd(facts=[type,size]): {sel['sel.bin']}")
    expect("type" in sel["sel.bin"], f"mlsd(facts=[type,size]): {sel['sel.bin']}")
    expect("perm" not in sel["sel.bin"], f"OPTS MLST type;size; did not restrict facts: {sel['sel.bin']}")
    resp = ftp.sendcmd("OPTS MLST type;size;modify;perm;unique;")
    expect_code(resp, 200, "OPTS MLST with all facts")
    expect("perm" in dict(ftp.mlsd())["sel.bin"], "facts not restored after OPTS MLST")
    ftp.quit()


if __name__ == "__main__":
    main(run)
