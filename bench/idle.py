#!/usr/bin/env python3
"""Opens N FTP control connections, logs each in (USER/PASS) and holds them idle.

Connections are spread round-robin over a range of source addresses (127.0.0.1-127.0.0.8) so no
single (source, server) pair runs out of ports. At most --concurrency logins are in progress at once
(a server with a small listen backlog would otherwise overflow into SYN cookies). When every login has
finished (or --login-timeout passed) it writes a JSON report to --ready-file; it then holds the
sessions until SIGTERM/SIGINT, a line (or EOF) on stdin if --stdin-stop is given, or --hold seconds,
whichever comes first, closes them all and prints the final JSON report on stdout.
With --tls each session is explicit FTPS: AUTH TLS (verifying the server against --ca) before USER.

  idle.py --port 2121 --user u --password p --sessions 10000 --ready-file /tmp/ready.json
"""
import argparse
import asyncio
import ipaddress
import json
import os
import resource
import signal
import ssl
import sys
import time


def parse_addrs(spec):
    out = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            lo, hi = int(ipaddress.IPv4Address(lo)), int(ipaddress.IPv4Address(hi))
            out.extend(str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1))
        elif part:
            out.append(part)
    return out


async def read_reply(reader):
    """Reads one (possibly multi-line) reply; returns (code, text)."""
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed by server")
    text = line.decode("latin-1").rstrip("\r\n")
    if len(text) >= 4 and text[3] == "-":
        code = text[:3]
        while True:
            nxt = await reader.readline()
            if not nxt:
                raise ConnectionError("closed by server in a multi-line reply")
            t = nxt.decode("latin-1").rstrip("\r\n")
            if t.startswith(code + " "):
                break
    return text[:3], text


class Stats:
    def __init__(self):
        self.ok = 0
        self.failed = 0
        self.errors = {}
        self.samples = []
        self.lat = []

    def fail(self, key, detail):
        self.failed += 1
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.samples) < 10:
            self.samples.append(detail)


async def login(i, args, src, sem, stats, conns):
    async with sem:
        t0 = time.monotonic()
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(args.host, args.port, local_addr=(src, 0)), args.op_timeout)
            code, text = await asyncio.wait_for(read_reply(reader), args.op_timeout)
            if code != "220":
                raise RuntimeError(f"greeting {text}")
            if args.tls_context is not None:
                writer.write(b"AUTH TLS\r\n")
                code, text = await asyncio.wait_for(read_reply(reader), args.op_timeout)
                if code != "234":
                    raise RuntimeError(f"AUTH TLS {text}")
                await asyncio.wait_for(writer.start_tls(args.tls_context, server_hostname=args.host),
                                       args.op_timeout)
            writer.write(f"USER {args.user}\r\n".encode())
            code, text = await asyncio.wait_for(read_reply(reader), args.op_timeout)
            if code == "331":
                writer.write(f"PASS {args.password}\r\n".encode())
                code, text = await asyncio.wait_for(read_reply(reader), args.op_timeout)
            if code != "230":
                raise RuntimeError(f"login {text}")
            stats.ok += 1
            stats.lat.append(time.monotonic() - t0)
            conns.append((reader, writer))
        except asyncio.TimeoutError:
            stats.fail("timeout", f"session {i} from {src}: timeout")
            if writer:
                writer.transport.abort()
        except Exception as e:  # noqa: BLE001 - every failure is counted, none is fatal
            key = str(e)[:3] if isinstance(e, RuntimeError) else type(e).__name__
            stats.fail(key, f"session {i} from {src}: {e}")
            if writer:
                writer.transport.abort()


async def main_async(args):
    addrs = parse_addrs(args.source_addrs)
    stats = Stats()
    conns = []
    sem = asyncio.Semaphore(args.concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.stdin_stop:
        loop.add_reader(sys.stdin.fileno(), stop.set)

    t0 = time.monotonic()
    tasks = [asyncio.create_task(login(i, args, addrs[i % len(addrs)], sem, stats, conns))
             for i in range(args.sessions)]
    done, pending = await asyncio.wait(tasks, timeout=args.login_timeout)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        stats.fail("login_phase_timeout", f"{len(pending)} logins not finished in {args.login_timeout}s")
        stats.failed += len(pending) - 1
        stats.errors["login_phase_timeout"] = len(pending)
    login_s = time.monotonic() - t0
    lat = sorted(stats.lat)

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

    report = {"sessions": args.sessions, "logged_in": stats.ok, "failed": stats.failed,
              "errors": stats.errors, "error_samples": stats.samples,
              "login_phase_s": round(login_s, 3),
              "logins_per_s": round(stats.ok / login_s, 1) if login_s > 0 else None,
              "login_ms_p50": pct(0.50), "login_ms_p99": pct(0.99),
              "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(args.ready_file + ".tmp", args.ready_file)
    print(f"idle: {stats.ok}/{args.sessions} logged in ({stats.failed} failed) in {login_s:.1f}s; holding",
          file=sys.stderr, flush=True)

    try:
        await asyncio.wait_for(stop.wait(), args.hold)
    except asyncio.TimeoutError:
        report["hold_timed_out"] = True
    # Count the sessions the server dropped while we held them.
    dropped = 0
    for reader, writer in conns:
        if reader.at_eof() or writer.transport.is_closing():
            dropped += 1
        writer.transport.abort()
    report["dropped_while_held"] = dropped
    report["held_s"] = round(time.monotonic() - t0 - login_s, 3)
    print(json.dumps(report), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default=os.environ.get("IDLE_PASSWORD"),
                    help="password (default: env IDLE_PASSWORD)")
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--source-addrs", default="127.0.0.1-127.0.0.8")
    ap.add_argument("--concurrency", type=int, default=64, help="logins in progress at once")
    ap.add_argument("--op-timeout", type=float, default=30.0, help="per connect/reply, seconds")
    ap.add_argument("--login-timeout", type=float, default=300.0, help="bound on the whole login phase")
    ap.add_argument("--hold", type=float, default=120.0, help="longest hold after the login phase")
    ap.add_argument("--ready-file", help="JSON report written when the login phase ends")
    ap.add_argument("--stdin-stop", action="store_true", help="stop on a line or EOF on stdin")
    ap.add_argument("--tls", action="store_true", help="explicit FTPS: AUTH TLS before logging in")
    ap.add_argument("--ca", help="with --tls: the CA (or self-signed) certificate to verify the server")
    args = ap.parse_args()
    args.tls_context = None
    if args.tls:
        args.tls_context = ssl.create_default_context(cafile=args.ca)
    if args.password is None:
        ap.error("--password or IDLE_PASSWORD is required")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.sessions + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
        except (ValueError, OSError):
            pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        print(f"idle: RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} < {want}; "
              "raise it with ulimit -n", file=sys.stderr)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
