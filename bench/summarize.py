#!/usr/bin/env python3
"""Summarises a bench/run.sh results directory as Markdown.

  summarize.py RESULTS_DIR        tables: scenario x server (median [min-max] over the runs that
                                  passed), idle memory per session, ratios ringest / best peer,
                                  ringest MODE B / ringest MODE S, and every run that did not pass
  summarize.py --line RUN.json    one line for one run (run.sh prints it as it goes)

Medians and spreads are taken over the runs whose status is "ok"; the "ok" column says how many of
the runs that is, and failed/partial runs are listed at the end with their errors.

FTPS runs (run.sh --tls) are labelled: env.json has "tls": true, every record "tls": 1, and scenario
ids end in -tls; the summary says so at the top, and warns if a directory mixes FTPS and plain runs.
"""
import glob
import json
import os
import statistics
import sys

SERVERS = ["ringest", "ringest-base", "ringest-buffered", "vsftpd", "pureftpd"]
# The other servers, for the ratios (ringest-buffered is ringest itself with direct I/O off).
PEERS = ["vsftpd", "pureftpd"]
# Rows of the transfer table: the servers, and the file system's own ceiling beside MODE B.
ROWS = SERVERS + ["fs_ceiling"]


def load(path):
    with open(path) as f:
        return json.load(f)


def num(x):
    return x if isinstance(x, (int, float)) else None


def cpu_delta(rec):
    a, b = rec.get("cpu_before") or {}, rec.get("cpu_after") or {}
    if num(a.get("cpu_s")) is None or num(b.get("cpu_s")) is None:
        return None
    return b["cpu_s"] - a["cpu_s"]


def ceiling(rec):
    """files/s and us of CPU per file from fs_ceiling's output line, or None."""
    import re
    m = re.search(r"([0-9.]+) files/s, ([0-9.]+) us CPU per file", rec.get("output") or "")
    return (float(m.group(1)), float(m.group(2))) if m else None


def socket_floor(rec):
    """us per file of the server's and the client's socket calls from modeb_floor's line, or None."""
    import re
    m = re.search(r"server calls ([0-9.]+) us/file .*client calls ([0-9.]+) us/file",
                  rec.get("floor_output") or "")
    return (float(m.group(1)), float(m.group(2))) if m else None


def classify(rec):
    """Returns (status, detail)."""
    if rec.get("status"):
        return rec["status"], rec.get("server_exit", "")
    if rec.get("kind") == "fs_ceiling":
        if rec.get("rc") == 0 and ceiling(rec):
            return "ok", ""
        return "failed", (rec.get("output") or "")[:300]
    if rec.get("kind") == "idle":
        rep = rec.get("idle") or rec.get("ready")
        if not rep:
            return "no-result", "idle helper printed no report"
        if not rec.get("server_alive_after"):
            return "server-died", rec.get("server_exit", "")
        detail = ""
        if rep.get("errors"):
            detail = f"errors {rep['errors']}; {'; '.join(rep.get('error_samples', [])[:2])}"
        if rep.get("logged_in") == rec.get("sessions") and not rep.get("dropped_while_held"):
            return "ok", detail
        if rep.get("dropped_while_held"):
            detail = f"{rep['dropped_while_held']} dropped while held; " + detail
        return ("partial" if rep.get("logged_in") else "failed"), detail
    lg = rec.get("loadgen")
    ex = rec.get("exec") or {}
    if not lg:
        return "no-result", f"loadgen rc {ex.get('rc')}; {(rec.get('loadgen_raw') or '')[:200]}"
    errs = lg.get("errors_by_code") or {}
    kinds = lg.get("errors_by_kind") or {}
    samples = lg.get("error_samples") or []
    detail = ", ".join(f"{k}x{v}" for k, v in list(errs.items()) + list(kinds.items()))
    if lg.get("fatal"):
        detail = (detail + "; " if detail else "") + f"fatal: {lg['fatal']}"
    if samples:
        detail = (detail + "; " if detail else "") + f"e.g. {samples[0]}"
    if ex.get("timed_out"):
        return "timeout", detail
    if not rec.get("server_alive_after"):
        return "server-died", f"{rec.get('server_exit')}; {detail}"
    ok = lg.get("files_ok") or 0
    if rec.get("probe"):
        return ("refused" if ok == 0 else "accepted"), detail
    if ok == rec.get("files") and not lg.get("files_failed") and not lg.get("files_not_attempted") \
            and lg.get("exit_code", 0) == 0 and not lg.get("fatal"):
        if num(rec.get("disk_files")) is not None and rec["disk_files"] != ok:
            return "disk-mismatch", f"{ok} files acknowledged, {int(rec['disk_files'])} on disk"
        return "ok", detail
    return ("partial" if ok else "failed"), f"{ok}/{int(rec.get('files') or 0)} ok; {detail}"


def metrics(rec):
    """The numbers of one run (None where not applicable)."""
    m = {}
    if rec.get("kind") == "fs_ceiling":
        c = ceiling(rec)
        m["files_per_s"] = c[0] if c else None
        m["cpu_per_1000_files"] = c[1] / 1000 if c else None
        fl = socket_floor(rec)
        m["floor_server_us"] = fl[0] if fl else None
        m["floor_client_us"] = fl[1] if fl else None
        return m
    cpu = cpu_delta(rec)
    m["cpu_s"] = cpu
    if rec.get("kind") == "idle":
        rep = rec.get("idle") or rec.get("ready") or {}
        n = rep.get("logged_in") or 0
        m0, m1 = rec.get("mem_before") or {}, rec.get("mem_after") or {}
        if n and m0 and m1:
            m["rss_kib_per_session"] = (m1["rss_kb"] - m0["rss_kb"]) / n
            m["pss_kib_per_session"] = (m1["pss_kb"] - m0["pss_kb"]) / n
            # Minus the subreaper wrapper run.sh puts above every server.
            m["procs"] = (m1.get("procs") or 0) - (1 if rec.get("reaper") else 0)
            m["rss_total_mib"] = m1["rss_kb"] / 1024
            m["pss_total_mib"] = m1["pss_kb"] / 1024
        m["logged_in"] = n
        m["logins_per_s"] = rep.get("logins_per_s")
        m["login_p99_ms"] = rep.get("login_ms_p99")
        if cpu is not None and n:
            m["cpu_per_1000_logins"] = cpu / (n / 1000)
        return m
    lg = rec.get("loadgen") or {}
    ex = rec.get("exec") or {}
    m["files_per_s"] = num(lg.get("files_per_s"))
    m["mb_per_s"] = num(lg.get("mb_per_s"))
    p99 = (lg.get("latency_us") or {}).get("p99")
    m["p99_ms"] = p99 / 1000 if num(p99) is not None else None
    m["data_conns"] = num(lg.get("data_connections"))
    m["retries"] = num(lg.get("retries"))
    ok = lg.get("files_ok") or 0
    b = lg.get("bytes") or 0
    # CPU per 1000 files where files are small, per GB where they are large (>= 1 MiB).
    big = str(rec.get("size", "")).upper().endswith(("M", "G"))
    m["cpu_per_1000_files"] = cpu / (ok / 1000) if cpu is not None and ok and not big else None
    m["cpu_per_gb"] = cpu / (b / 1e9) if cpu is not None and b and big else None
    cl = None
    if num(ex.get("user_s")) is not None:
        cl = ex["user_s"] + ex["sys_s"]
    m["client_cpu_s"] = cl
    c0, c1 = rec.get("meminfo_before") or {}, rec.get("meminfo_after") or {}
    if num(c0.get("cached_kb")) is not None and num(c1.get("cached_kb")) is not None:
        m["cache_growth_mib"] = (c1["cached_kb"] - c0["cached_kb"]) / 1024
    mb, ma = rec.get("machine_before") or {}, rec.get("machine_after") or {}
    if mb and ma and cpu is not None and cl is not None:
        m["other_cpu_s"] = max(0.0, (ma["busy_s"] - mb["busy_s"]) - cpu - cl)
        if "steal_s" in ma and "steal_s" in mb:
            m["steal_s"] = ma["steal_s"] - mb["steal_s"]
    return m


def line(path):
    rec = load(path)
    st, detail = classify(rec)
    m = metrics(rec)
    f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    if rec.get("kind") == "fs_ceiling":
        s = (f"{rec['server']:8} {st:12} {f(m.get('files_per_s'))} files/s, "
             f"{f((m.get('cpu_per_1000_files') or 0) * 1000)} us CPU per file (no network, no FTP); "
             f"socket calls alone {f(m.get('floor_server_us'))} us/file server, "
             f"{f(m.get('floor_client_us'))} client (modeb_floor)")
    elif rec.get("kind") == "idle":
        s = (f"{rec['server']:8} {st:12} logged in {m.get('logged_in')}, RSS/session "
             f"{f(m.get('rss_kib_per_session'))} KiB, PSS/session {f(m.get('pss_kib_per_session'))} KiB, "
             f"{m.get('procs')} procs, {f(m.get('logins_per_s'))} logins/s, server CPU {f(m['cpu_s'], 2)} s")
    else:
        s = (f"{rec['server']:8} {st:12} {f(m.get('files_per_s'))} files/s, {f(m.get('mb_per_s'))} MB/s, "
             f"p99 {f(m.get('p99_ms'), 2)} ms, {m.get('data_conns') and int(m['data_conns'])} data conns, "
             f"{m.get('retries') and int(m['retries'])} retries, "
             f"server CPU {f(m['cpu_s'], 2)} s, client CPU {f(m.get('client_cpu_s'), 2)} s, "
             f"other load {f(m.get('other_cpu_s'), 2)} CPU-s, steal {f(m.get('steal_s'), 2)} s, "
             f"page cache {f(m.get('cache_growth_mib'), 0)} MiB more")
    if st != "ok" and detail:
        s += f"  [{detail[:300]}]"
    if rec.get("tls"):
        s = "FTPS " + s
    print(s)


def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def fmt(vals, p=1, spread=True):
    m, lo, hi = med(vals)
    if m is None:
        return "-"
    if not spread or lo == hi:
        return f"{m:,.{p}f}"
    return f"{m:,.{p}f} [{lo:,.{p}f}–{hi:,.{p}f}]"


def summarize(d):
    recs = [load(p) for p in sorted(glob.glob(os.path.join(d, "*", "*-r*.json")))
            if not p.endswith((".loadgen.json", ".exec.json", ".idle.json", ".ready.json"))]
    recs = [r for r in recs if "server" in r and "scenario" in r]
    env = {}
    if os.path.exists(os.path.join(d, "env.json")):
        env = load(os.path.join(d, "env.json"))
    out = []
    out.append(f"# ringest benchmark: {os.path.basename(os.path.normpath(d))}\n")
    if env:
        out.append(f"- mode: **{env.get('mode')}**, runs per server: {int(env.get('runs') or 0)}, "
                   f"auth: {env.get('auth')}, started {env.get('started')}")
        out.append(f"- ringest {env.get('ringest')}; vsftpd {env.get('vsftpd') or '-'}; "
                   f"Pure-FTPd {env.get('pureftpd') or '-'}")
        out.append(f"- {int(env.get('cpus') or 0)} CPUs, kernel {env.get('kernel')}, load at start "
                   f"{' '.join((env.get('loadavg_start') or '').split()[:3])}")
    if env.get("tls"):
        out.append("- **FTPS** (explicit: AUTH TLS, PBSZ 0, PROT P; TLS required on control and data "
                   f"connections), one certificate for all servers (sha256 {env.get('tls_cert_sha256', '?')[:23]}...); "
                   "scenario ids end in -tls")
        out.append(f"  - ringest `{env.get('tls_ringest_args')}`; loadgen `{env.get('tls_loadgen_args')}`; "
                   f"Pure-FTPd `{env.get('tls_pureftpd_args')}`; vsftpd `{env.get('tls_vsftpd_conf')}`")
    tls_recs = sum(1 for r in recs if r.get("tls"))
    if tls_recs and tls_recs != len(recs):
        out.append(f"- **WARNING: this directory mixes FTPS runs ({tls_recs}) and plain runs "
                   f"({len(recs) - tls_recs})**; FTPS scenario ids end in -tls")
    elif tls_recs and not env.get("tls"):
        out.append("- **FTPS** runs (every record has tls=1; env.json does not say so)")
    out.append("- values: median [min–max] over the runs with status ok; 'other' = CPU-s used on the "
               "machine by neither the server nor loadgen during the run (a shared-machine indicator)\n")

    by = {}
    for r in recs:
        by.setdefault(r["scenario"], {}).setdefault(r["server"], []).append(r)
    scen_order = sorted(by)

    # Transfer scenarios.
    out.append("## Transfers\n")
    out.append("| scenario | server | ok | files/s | MB/s | p99 ms | data conns | retries | server CPU s | "
               "CPU s / 1000 files | CPU s / GB | client CPU s | other CPU s | page cache +MiB |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    med_by = {}
    for sc in scen_order:
        for srv in ROWS:
            rs = by[sc].get(srv)
            if not rs or rs[0].get("kind") == "idle":
                continue
            st = [classify(r)[0] for r in rs]
            oks = [metrics(r) for r, s in zip(rs, st) if s == "ok"]
            okcol = f"{len(oks)}/{len(rs)}"
            if not oks:
                kinds = sorted(set(st))
                out.append(f"| {sc} | {srv} | {okcol} ({', '.join(kinds)}) | - | - | - | - | - | - | - | - | - | - | - |")
                continue
            g = lambda k: [m.get(k) for m in oks]  # noqa: E731
            med_by[(sc, srv)] = {k: med(g(k))[0] for k in oks[0]}
            out.append(f"| {sc} | {srv} | {okcol} | {fmt(g('files_per_s'))} | {fmt(g('mb_per_s'))} | "
                       f"{fmt(g('p99_ms'), 2)} | {fmt(g('data_conns'), 0, False)} | {fmt(g('retries'), 0, False)} | "
                       f"{fmt(g('cpu_s'), 2)} | "
                       f"{fmt(g('cpu_per_1000_files'), 3)} | {fmt(g('cpu_per_gb'), 2)} | "
                       f"{fmt(g('client_cpu_s'), 2, False)} | {fmt(g('other_cpu_s'), 1, False)} | "
                       f"{fmt(g('cache_growth_mib'), 0)} |")

    # Idle sessions.
    idle = [sc for sc in scen_order if any(r.get("kind") == "idle" for rs in by[sc].values() for r in rs)]
    if idle:
        out.append("\n## Idle logged-in sessions: server memory per session\n")
        out.append("| scenario | server | ok | sessions | RSS KiB / session | PSS KiB / session | "
                   "server processes | total RSS MiB | total PSS MiB | logins/s | login p99 ms | "
                   "CPU s / 1000 logins |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for sc in idle:
            for srv in SERVERS:
                rs = by[sc].get(srv)
                if not rs:
                    continue
                st = [classify(r)[0] for r in rs]
                oks = [metrics(r) for r, s in zip(rs, st) if s == "ok"]
                okcol = f"{len(oks)}/{len(rs)}"
                sess = int(rs[0].get("sessions") or 0)
                if not oks:
                    out.append(f"| {sc} | {srv} | {okcol} ({', '.join(sorted(set(st)))}) | {sess} | - | - | - | - | - | - | - | - |")
                    continue
                g = lambda k: [m.get(k) for m in oks]  # noqa: E731
                med_by[(sc, srv)] = {k: med(g(k))[0] for k in oks[0]}
                out.append(f"| {sc} | {srv} | {okcol} | {sess} | {fmt(g('rss_kib_per_session'))} | "
                           f"{fmt(g('pss_kib_per_session'))} | {fmt(g('procs'), 0, False)} | "
                           f"{fmt(g('rss_total_mib'), 0, False)} | {fmt(g('pss_total_mib'), 0, False)} | "
                           f"{fmt(g('logins_per_s'), 0)} | {fmt(g('login_p99_ms'), 1)} | "
                           f"{fmt(g('cpu_per_1000_logins'), 3)} |")

    # Ratios.
    out.append("\n## Ratios: ringest / best peer (medians)\n")
    out.append("files/s and MB/s: > 1 means ringest is faster. CPU per unit, p99 and memory: < 1 means "
               "ringest uses less.\n")
    out.append("| scenario | best peer (files/s) | files/s | MB/s | p99 | best peer (CPU) | CPU / unit | "
               "memory / session |")
    out.append("|---|---|---|---|---|---|---|---|")

    def ratio(a, b):
        if a is None or not b:
            return "-"
        v = a / b
        return f"{v:.3g}x (1/{1 / v:,.0f})" if 0 < v < 0.1 else f"{v:.2f}x"

    for sc in scen_order:
        r = med_by.get((sc, "ringest"))
        peers = {s: med_by[(sc, s)] for s in PEERS if (sc, s) in med_by}
        if not r:
            continue
        if not peers:
            out.append(f"| {sc} | (no peer passed) | - | - | - | - | - | - |")
            continue
        if "rss_kib_per_session" in r:
            best = min(peers, key=lambda s: peers[s].get("pss_kib_per_session") or float("inf"))
            out.append(f"| {sc} | {best} (least PSS) | - | - | - | - | - | RSS "
                       f"{ratio(r.get('rss_kib_per_session'), peers[best].get('rss_kib_per_session'))}, PSS "
                       f"{ratio(r.get('pss_kib_per_session'), peers[best].get('pss_kib_per_session'))} |")
            continue
        best = max(peers, key=lambda s: peers[s].get("files_per_s") or 0)
        unit = "cpu_per_gb" if "1M" in sc or "2G" in sc else "cpu_per_1000_files"
        bestc = min(peers, key=lambda s: peers[s].get(unit) or float("inf"))
        out.append(f"| {sc} | {best} | {ratio(r.get('files_per_s'), peers[best].get('files_per_s'))} | "
                   f"{ratio(r.get('mb_per_s'), peers[best].get('mb_per_s'))} | "
                   f"{ratio(r.get('p99_ms'), peers[best].get('p99_ms'))} | {bestc} | "
                   f"{ratio(r.get(unit), peers[bestc].get(unit))} ({'per GB' if unit == 'cpu_per_gb' else 'per 1000 files'}) | - |")

    mb = [sc for sc in scen_order if sc.startswith("s5-") and (sc, "ringest") in med_by]
    ms = [sc for sc in scen_order if sc.startswith("s1-") and (sc, "ringest") in med_by]
    if mb and ms:
        out.append("\n## ringest MODE B vs ringest MODE S (4 KiB files)\n")
        out.append("| MODE B scenario | MODE S scenario | files/s ratio | CPU / 1000 files ratio |")
        out.append("|---|---|---|---|")
        for b in mb:
            for s in ms:
                rb, rs_ = med_by[(b, "ringest")], med_by[(s, "ringest")]
                out.append(f"| {b} | {s} | {ratio(rb.get('files_per_s'), rs_.get('files_per_s'))} | "
                           f"{ratio(rb.get('cpu_per_1000_files'), rs_.get('cpu_per_1000_files'))} |")

    base = [sc for sc in scen_order if (sc, "ringest") in med_by and (sc, "ringest-base") in med_by]
    if base:
        out.append("\n## ringest vs ringest-base (another build, same run)\n")
        out.append("files/s and MB/s > 1: this build is faster; CPU per unit < 1: it uses less.\n")
        out.append("| scenario | files/s | MB/s | p99 | CPU / unit |")
        out.append("|---|---|---|---|---|")
        for sc in base:
            r, b = med_by[(sc, "ringest")], med_by[(sc, "ringest-base")]
            unit = "cpu_per_gb" if r.get("cpu_per_gb") is not None else "cpu_per_1000_files"
            out.append(f"| {sc} | {ratio(r.get('files_per_s'), b.get('files_per_s'))} | "
                       f"{ratio(r.get('mb_per_s'), b.get('mb_per_s'))} | {ratio(r.get('p99_ms'), b.get('p99_ms'))} | "
                       f"{ratio(r.get(unit), b.get(unit))} |")

    both = [sc for sc in scen_order if (sc, "ringest") in med_by and (sc, "ringest-buffered") in med_by]
    if both:
        out.append("\n## ringest with direct I/O (default) vs its buffered path\n")
        out.append("MB/s > 1: direct is faster; CPU / GB < 1: direct uses less. Page cache: growth during "
                   "the run (MiB), direct / buffered.\n")
        out.append("| scenario | MB/s | CPU / GB | page cache +MiB |")
        out.append("|---|---|---|---|")
        for sc in both:
            d, b = med_by[(sc, "ringest")], med_by[(sc, "ringest-buffered")]
            gd, gb = d.get("cache_growth_mib"), b.get("cache_growth_mib")
            grow = "-" if gd is None or gb is None else f"{gd:,.0f} / {gb:,.0f}"
            out.append(f"| {sc} | {ratio(d.get('mb_per_s'), b.get('mb_per_s'))} | "
                       f"{ratio(d.get('cpu_per_gb'), b.get('cpu_per_gb'))} | {grow} |")

    ceil = [sc for sc in scen_order if (sc, "fs_ceiling") in med_by and (sc, "ringest") in med_by]
    if ceil:
        out.append("\n## ringest MODE B vs the file system's ceiling (same run)\n")
        cores = os.cpu_count() or 1
        out.append("- with no code of its own: where a server and client that spent nothing beyond the "
                   "ceiling's file-system work and the bare socket calls of a pipelined MODE B upload "
                   f"(modeb_floor) would stand; files/s shares this machine's {cores} cores between the "
                   "two, as ringest and loadgen do.\n")
        out.append("| scenario | files/s ratio (target >= 0.6) | CPU / file ratio (target <= 1.2) "
                   "| with no code: files/s, CPU | socket calls us/file, server / client |")
        out.append("|---|---|---|---|---|")
        for sc in ceil:
            r, c = med_by[(sc, "ringest")], med_by[(sc, "fs_ceiling")]
            cc, fs_, fc = c.get("cpu_per_1000_files"), c.get("floor_server_us"), c.get("floor_client_us")
            if cc and fs_ is not None and fc is not None and c.get("files_per_s"):
                per_file_s = cc / 1000 + (fs_ + fc) / 1e6
                least = (f"{ratio(cores / per_file_s, c['files_per_s'])}, "
                         f"{ratio(cc + fs_ / 1000, cc)}")
                calls = f"{fs_:.1f} / {fc:.1f}"
            else:
                least = calls = "-"
            out.append(f"| {sc} | {ratio(r.get('files_per_s'), c.get('files_per_s'))} | "
                       f"{ratio(r.get('cpu_per_1000_files'), c.get('cpu_per_1000_files'))} | {least} | {calls} |")

    # Everything that did not pass.
    bad = [(r, *classify(r)) for r in recs]
    bad = [(r, s, d) for r, s, d in bad if s != "ok"]
    if bad:
        out.append("\n## Runs that did not pass (recorded, not hidden)\n")
        for r, s, d in bad:
            run = int(r.get("run") or 0)
            out.append(f"- {r['scenario']} {r['server']} run {run}: **{s}** {d[:400]}")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--line":
        line(sys.argv[2])
    elif len(sys.argv) == 2 and os.path.isdir(sys.argv[1]):
        sys.stdout.write(summarize(sys.argv[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
