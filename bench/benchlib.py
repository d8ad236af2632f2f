#!/usr/bin/env python3
"""Helpers for bench/run.sh: /proc accounting of a server's process tree, a bounded command runner
with rusage, and the per-run record writer. Standard library only.

  benchlib.py cpu PID            JSON: CPU seconds of PID (utime+stime+cutime+cstime) plus every live
                                 descendant (the same four fields), and the number of processes
  benchlib.py mem PID            JSON: summed VmRSS and PSS (smaps_rollup) of PID and its descendants
  benchlib.py descendants PID    the live descendants' PIDs, one a line
  benchlib.py snapshot PID       the live descendants as "PID STARTTIME" lines
  benchlib.py killsnap FILE      SIGKILL each process of a snapshot that still has the same start time
  benchlib.py machine            JSON: machine-wide busy and idle CPU seconds since boot (/proc/stat)
  benchlib.py settle PID SECS [X...]
                                 wait (at most SECS) until PID has no live descendants left other
                                 than the PIDs X (the server's main process under the subreaper)
  benchlib.py exec --timeout S --stdout F --stderr F --meta F -- CMD...
                                 run CMD, kill it (SIGTERM, then SIGKILL) after S seconds; write
                                 {rc, wall_s, user_s, sys_s, timed_out} to F
  benchlib.py subreaper -- CMD... run CMD as a child subreaper (prctl PR_SET_CHILD_SUBREAPER): processes
                                 that CMD's tree orphans are re-parented to us and reaped here, so
                                 their CPU time lands in our cutime/cstime instead of init's.
                                 SIGTERM/SIGINT/SIGHUP are forwarded to CMD; we exit with CMD's
                                 status once CMD has exited and the orphans are reaped (at most 30 s)
  benchlib.py record --out F [--set K=V]... [--num K=V]... [--json K=FILE]...
                                 write one JSON object (values of --json that are missing or not
                                 JSON are stored as null plus K_raw with the first 2000 characters)
"""
import json
import os
import signal
import subprocess
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """Returns (ppid, utime, stime, cutime, cstime, state) in ticks, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return (int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]), rest[0])


def all_stats():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(pid, stats=None):
    stats = stats if stats is not None else all_stats()
    children = {}
    for p, st in stats.items():
        children.setdefault(st[0], []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu(pid):
    stats = all_stats()
    if pid not in stats:
        return {"alive": False, "cpu_s": None, "procs": 0}
    procs = [pid] + descendants(pid, stats)
    ticks = 0
    for p in procs:
        st = stats.get(p)
        if st:
            ticks += st[1] + st[2] + st[3] + st[4]
    return {"alive": True, "cpu_s": ticks / TCK, "procs": len(procs)}


def mem(pid):
    procs = [pid] + descendants(pid)
    rss = pss = 0
    n = 0
    for p in procs:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        break
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
            n += 1
        except (OSError, ValueError):
            pass
    return {"rss_kb": rss, "pss_kb": pss, "procs": n}


def starttime(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return s[s.rfind(")") + 2:].split()[19]  # field 22


def killsnap(path):
    killed = 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and starttime(int(parts[0])) == parts[1]:
                try:
                    os.kill(int(parts[0]), signal.SIGKILL)
                    killed += 1
                except OSError:
                    pass
    return killed


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 10
    # user nice system idle iowait irq softirq steal (guest is included in user). iowait counts as
    # idle (io_uring waits show up as iowait); steal is the hypervisor's, reported apart.
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return {"busy_s": busy / TCK, "idle_s": (v[3] + v[4]) / TCK, "steal_s": v[7] / TCK,
            "t": time.monotonic()}


def meminfo():
    """The page cache and free memory (KiB), to see how much of it an upload filled."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Cached", "MemFree", "Dirty", "Writeback"):
                out[k.lower() + "_kb"] = int(v.split()[0])
    return out


def settle(pid, secs, exclude=()):
    deadline = time.monotonic() + secs
    while True:
        stats = all_stats()
        live = [p for p in descendants(pid, stats) if stats[p][5] != "Z" and p not in exclude]
        if not live or time.monotonic() >= deadline:
            return len(live)
        time.sleep(0.1)


def run_bounded(argv):
    timeout, out, err, meta, cmd = None, None, None, None, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            cmd = argv[i + 1:]
            break
        if a == "--timeout":
            timeout = float(argv[i + 1])
        elif a == "--stdout":
            out = argv[i + 1]
        elif a == "--stderr":
            err = argv[i + 1]
        elif a == "--meta":
            meta = argv[i + 1]
        else:
            sys.exit(f"exec: unknown option {a}")
        i += 2
    if not cmd or timeout is None or meta is None:
        sys.exit("exec: needs --timeout, --meta and -- CMD")
    fo = open(out, "wb") if out else subprocess.DEVNULL
    fe = open(err, "wb") if err else subprocess.DEVNULL
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    timed_out = False
    deadline = t0 + timeout
    ru = None
    status = None
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        now = time.monotonic()
        if now >= deadline and not timed_out:
            timed_out = True
            proc.send_signal(signal.SIGTERM)
            deadline = now + 5
        elif now >= deadline and timed_out:
            proc.kill()
            deadline = now + 3600
        time.sleep(0.02)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    res = {"rc": rc, "wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
           "maxrss_kb": ru.ru_maxrss, "timed_out": timed_out}
    with open(meta, "w") as f:
        json.dump(res, f)
    return rc


def subreaper(cmd):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("subreaper: prctl failed; orphans will go to init", file=sys.stderr)
    child = subprocess.Popen(cmd)
    main_pid = child.pid

    def forward(sig, _frame):
        try:
            os.kill(main_pid, sig)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status = None
    deadline = None
    orphans = 0
    while True:
        try:
            if deadline is None:
                pid, st = os.wait()
            else:
                pid, st = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                    continue
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if pid == main_pid:
            status = os.waitstatus_to_exitcode(st)
            deadline = time.monotonic() + 30
        else:
            orphans += 1
    child.returncode = status  # keep Popen from reaping again
    print(f"subreaper: server exited with {status}; reaped {orphans} orphaned processes of it",
          file=sys.stderr)
    if status is None:
        status = 1
    # Exit like the child did: 128+N for a signal.
    sys.exit(status if status >= 0 else 128 - status)


def record(argv):
    obj, out = {}, None
    i = 0
    while i < len(argv):
        a, v = argv[i], argv[i + 1]
        i += 2
        if a == "--out":
            out = v
            continue
        k, _, val = v.partition("=")
        if a == "--set":
            obj[k] = val
        elif a == "--num":
            try:
                obj[k] = float(val) if val not in ("", "null", "None") else None
            except ValueError:
                obj[k] = None
        elif a == "--json":
            try:
                with open(val) as f:
                    text = f.read()
            except OSError:
                obj[k] = None
                continue
            try:
                obj[k] = json.loads(text)
            except ValueError:
                # loadgen may print progress before the object; take the last JSON line.
                parsed = None
                for line in reversed(text.strip().splitlines()):
                    try:
                        parsed = json.loads(line)
                        break
                    except ValueError:
                        continue
                obj[k] = parsed
                if parsed is None:
                    obj[k + "_raw"] = text[:2000]
        else:
            sys.exit(f"record: unknown option {a}")
    with open(out, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "cpu":
        print(json.dumps(cpu(int(args[0]))))
    elif cmd == "mem":
        print(json.dumps(mem(int(args[0]))))
    elif cmd == "descendants":
        for p in descendants(int(args[0])):
            print(p)
    elif cmd == "meminfo":
        print(json.dumps(meminfo()))
    elif cmd == "machine":
        print(json.dumps(machine()))
    elif cmd == "snapshot":
        for p in descendants(int(args[0])):
            st = starttime(p)
            if st:
                print(p, st)
    elif cmd == "killsnap":
        print(killsnap(args[0]))
    elif cmd == "settle":
        print(settle(int(args[0]), float(args[1]), {int(a) for a in args[2:]}))
    elif cmd == "exec":
        sys.exit(run_bounded(args))
    elif cmd == "subreaper":
        subreaper(args[1:] if args and args[0] == "--" else args)
    elif cmd == "record":
        record(args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
