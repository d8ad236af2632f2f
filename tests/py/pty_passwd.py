"""Usage: pty_passwd.py RINGEST_BINARY FIRST SECOND

Runs `ringest passwd` on a pseudo-terminal, as a person would: waits for each prompt, types FIRST
then SECOND, and prints everything the terminal showed (run by tests/operator_errors.rs, which
checks that no typed password was echoed). Exits with ringest's exit code.
"""
import os
import pty
import select
import sys
import time

binary, first, second = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "passwd"])

shown = b""


def read_until(token, timeout=30):
    global shown
    end = time.monotonic() + timeout
    while token not in shown:
        left = end - time.monotonic()
        if left <= 0:
            sys.stdout.write(shown.decode(errors="replace"))
            raise SystemExit(f"timed out waiting for {token!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        shown += chunk


read_until(b"Password: ")
os.write(fd, first + b"\n")
read_until(b"Retype password: ")
os.write(fd, second + b"\n")
read_until(b"\x00never\x00", timeout=30)  # read until the program exits (EOF on the pty)
_, status = os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
