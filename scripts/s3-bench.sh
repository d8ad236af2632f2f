#!/usr/bin/env bash
# The benchmark of issue #12 ("Past one machine"): files/s with 4 KiB files and MB/s with 1 MiB and
# 64 MiB files, landed
#   local    one ringest node on local disk (the reference),
#   s3-one   one ringest node into a 3-node Garage cluster (replication factor 3),
#   s3-two   two ringest nodes behind HAProxy (send-proxy-v2) into the same kind of cluster,
# with loadgen on the same machine, everything on loopback. Beside the rates: the ringest nodes'
# CPU (utime+stime from /proc/PID/stat, summed over the nodes) per file and per GB, their peak RSS
# (VmRSS sampled every 100 ms), and Garage's own CPU (its three nodes) reported apart. The issue's
# target: S3 landing costs at most 2x the server CPU per GB of local landing.
#
# A fresh Garage cluster (and a fresh local root) per workload, removed after it: RF 3 on one disk
# stores everything three times.
#
#   scripts/s3-bench.sh                       # all three configurations, all three workloads
#   CONFIGS="s3-one" WORKLOADS="64M" scripts/s3-bench.sh
#   scripts/s3-bench.sh --cap-test 200        # only: 200 concurrent 64 MiB uploads into one node
#                                             # with s3_memory_cap (CAP, default 1 GiB); peak RSS vs cap
#
# Bounded: SMALL_FILES (20000) x 4 KiB, MID_FILES (2000) x 1 MiB, BIG_FILES (32) x 64 MiB; every
# loadgen run has --duration DURATION (600 s). The cap test is at most 1000 uploads (the issue's
# figure: 64 GiB, stored on a replication-factor-1 Garage node to need the disk only once) and
# refuses to start without the disk space for it. Needs: garage (RINGEST_GARAGE,
# /var/cache/ringest/garage/bin/garage or PATH; .ci/run builds it), haproxy, curl, python3.
# Results: a table on stdout, and every raw file under OUT (default /tmp/s3-bench-<time>).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/scripts/lib.sh"   # cpu_ticks
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
CONFIGS=${CONFIGS:-"local s3-one s3-two"}
WORKLOADS=${WORKLOADS:-"4K 1M 64M"}
SMALL_FILES=${SMALL_FILES:-20000}
MID_FILES=${MID_FILES:-2000}
BIG_FILES=${BIG_FILES:-32}
DURATION=${DURATION:-600}
CAP=${CAP:-1073741824}
PART=${PART:-8388608}
CAP_TEST=0
OUT=${OUT:-/tmp/s3-bench-$(date +%Y%m%d-%H%M%S)}

while [[ $# -gt 0 ]]; do
    case $1 in
        --cap-test) CAP_TEST=${2:?--cap-test N}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ $CAP_TEST -gt 1000 ]]; then
    echo "--cap-test: at most 1000 uploads (64 GiB)" >&2
    exit 2
fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$OUT"
WORK=$OUT/work
mkdir -p "$WORK"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

GARAGE=${RINGEST_GARAGE:-/var/cache/ringest/garage/bin/garage}
[[ -x $GARAGE ]] || GARAGE=$(command -v garage || true)
[[ -n $GARAGE && -x $GARAGE ]] || die "no garage binary: cargo install garage --locked --version 2.5.0 --root /var/cache/ringest/garage (or set RINGEST_GARAGE)"
command -v haproxy >/dev/null || die "haproxy not installed (apt-get install haproxy)"
command -v curl >/dev/null || die "curl not installed"
command -v python3 >/dev/null || die "python3 not installed"

log "building ringest and loadgen (release)"
(cd "$REPO" && cargo build --release -q -p ringest -p loadgen) || die "build failed"
RINGEST=$TARGET_DIR/release/ringest
LOADGEN=$TARGET_DIR/release/loadgen
ulimit -n 65536 2>/dev/null || true

USER_NAME=bench
PASSWORD=bench-$RANDOM$RANDOM
TICKS=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
sum_cpu() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Samples the peak VmRSS of PIDs every 100 ms into FILE until FILE.stop exists.
rss_sampler() {
    local file=$1; shift
    local peak=0 p r
    while [[ ! -e $file.stop ]]; do
        for p in "$@"; do
            r=$(rss_kib "$p"); [[ $r -gt $peak ]] && peak=$r
        done
        echo "$peak" >"$file"
        sleep 0.1
    done
}

# --- Garage ------------------------------------------------------------------------------------
# garage_start DIR NODES RF: starts the cluster, imports a key, creates bucket "ingest".
# Sets GARAGE_PIDS, GARAGE_EPS (S3 endpoints), GARAGE_CFG0, KEY_ID, SECRET.
garage_start() {
    local dir=$1 n=$2 rf=$3 i j secret
    secret=$(rand_hex 32)
    GARAGE_PIDS=(); GARAGE_EPS=(); local rpcs=() cfgs=() ids=()
    for ((i = 0; i < n; i++)); do
        local rpc s3 d=$dir/g$i
        rpc=$(free_port); s3=$(free_port)
        mkdir -p "$d/meta" "$d/data"
        cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "lmdb"
replication_factor = $rf
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
EOF
        RUST_LOG=warn "$GARAGE" -c "$d/garage.toml" server >"$d/log" 2>&1 &
        GARAGE_PIDS+=($!); PIDS+=($!)
        rpcs+=("$rpc"); cfgs+=("$d/garage.toml"); GARAGE_EPS+=("http://127.0.0.1:$s3")
    done
    GARAGE_CFG0=${cfgs[0]}
    g() { RUST_LOG=warn timeout 20 "$GARAGE" -c "$@"; }
    retry() { local k; for ((k = 0; k < 100; k++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }
    for ((i = 0; i < n; i++)); do
        retry g "${cfgs[$i]}" node id -q
        ids+=("$(g "${cfgs[$i]}" node id -q | cut -d@ -f1)")
    done
    for ((i = 0; i < n; i++)); do
        for ((j = i + 1; j < n; j++)); do
            retry g "${cfgs[$i]}" node connect "${ids[$j]}@127.0.0.1:${rpcs[$j]}"
        done
        retry g "$GARAGE_CFG0" layout assign -z "z$i" -c 100G "${ids[$i]}"
    done
    retry g "$GARAGE_CFG0" layout apply --version 1
    KEY_ID=GK$(rand_hex 12); SECRET=$(rand_hex 32)
    retry g "$GARAGE_CFG0" key import --yes -n bench "$KEY_ID" "$SECRET"
    retry g "$GARAGE_CFG0" bucket create ingest
    retry g "$GARAGE_CFG0" bucket allow --read --write --owner ingest --key "$KEY_ID"
    # Ready when every endpoint takes a signed PUT.
    local ep ok
    for ep in "${GARAGE_EPS[@]}"; do
        ok=0
        for ((j = 0; j < 150; j++)); do
            if curl -sf --max-time 5 --aws-sigv4 "aws:amz:garage:s3" --user "$KEY_ID:$SECRET" \
                -X PUT -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --data-binary ready "$ep/ingest/.ready" >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.2
        done
        [[ $ok == 1 ]] || die "garage endpoint $ep does not take a PUT (logs in $dir/g*/log)"
    done
    printf '%s\n%s\n' "$KEY_ID" "$SECRET" >"$dir/s3-credentials"
}

garage_stop() {
    local p
    for p in "${GARAGE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${GARAGE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    GARAGE_PIDS=()
}

# --- ringest nodes and HAProxy -----------------------------------------------------------------
# node_start DIR NAME ENDPOINT|local PASSIVE_LO PASSIVE_HI PROXY(0|1) [extra flags...]: sets NODE_PID,
# NODE_PORT.
node_start() {
    local dir=$1 name=$2 ep=$3 lo=$4 hi=$5 proxy=$6; shift 6
    local d=$dir/$name args
    mkdir -p "$d/root"
    args=(serve --listen 127.0.0.1:0 --root "$d/root" --user "$USER_NAME" --password "$PASSWORD"
        --tls off --passive-ports "$lo-$hi" --max-sessions-per-ip 0)
    if [[ $ep != local ]]; then
        args+=(--storage s3 --s3-endpoint "$ep" --s3-region garage --s3-bucket ingest
            --s3-credentials-file "$dir/s3-credentials" --s3-part-size "$PART" --s3-memory-cap "$CAP")
    fi
    if [[ $proxy == 1 ]]; then
        args+=(--proxy-protocol required --proxy-from 127.0.0.1/32 --passive-address 127.0.0.2)
    fi
    args+=("$@")
    "$RINGEST" "${args[@]}" >"$d/stdout" 2>"$d/stderr" &
    NODE_PID=$!; PIDS+=($NODE_PID)
    local k
    for ((k = 0; k < 100; k++)); do
        # (the background start may not have created stdout yet)
        NODE_PORT=$(sed -n 's/^ringest: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$d/stdout" 2>/dev/null || true)
        [[ -n $NODE_PORT ]] && return 0
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$d/stderr" >&2
    die "ringest $name did not start: ${args[*]}"
}

# haproxy_start DIR CTRL_PORT1 LO1 HI1 CTRL_PORT2 LO2 HI2: sets HAPROXY_PID, FRONT_PORT.
haproxy_start() {
    local dir=$1
    FRONT_PORT=$(free_port)
    cat >"$dir/haproxy.cfg" <<EOF
global
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend ftp
  bind 127.0.0.2:$FRONT_PORT
  default_backend ftp
backend ftp
  balance leastconn
  source 127.0.0.1
  server node0 127.0.0.1:$2 send-proxy-v2
  server node1 127.0.0.1:$5 send-proxy-v2
frontend pasv0
  bind 127.0.0.2:$3-$4
  default_backend pasv0
backend pasv0
  source 127.0.0.1
  server node0 127.0.0.1 send-proxy-v2
frontend pasv1
  bind 127.0.0.2:$6-$7
  default_backend pasv1
backend pasv1
  source 127.0.0.1
  server node1 127.0.0.1 send-proxy-v2
EOF
    haproxy -c -f "$dir/haproxy.cfg" >/dev/null || die "haproxy -c failed ($dir/haproxy.cfg)"
    haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)
    local k
    for ((k = 0; k < 100; k++)); do
        (exec 3<>"/dev/tcp/127.0.0.2/$FRONT_PORT") 2>/dev/null && return 0
        kill -0 "$HAPROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$dir/haproxy.log" >&2
    die "haproxy did not listen"
}

stop_pids() {
    local p
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# --- one measurement ---------------------------------------------------------------------------
RESULTS=$OUT/results.tsv
printf 'config\tworkload\tfiles\tfiles_ok\telapsed_s\tfiles_per_s\tmb_per_s\tserver_cpu_s\tcpu_ms_per_file\tcpu_s_per_gb\tpeak_rss_mib\tgarage_cpu_s\n' >"$RESULTS"

workload_args() {
    case $1 in
        4K) echo "$SMALL_FILES 64 4K" ;;
        1M) echo "$MID_FILES 32 1M" ;;
        64M) echo "$BIG_FILES 16 64M" ;;
        *) die "unknown workload $1" ;;
    esac
}

# measure CONFIG WORKLOAD HOST PORT SRC "NODE_PIDS" "GARAGE_PIDS"
measure() {
    local config=$1 wl=$2 host=$3 port=$4 src=$5 nodes=$6 gpids=$7 files sessions size
    read -r files sessions size <<<"$(workload_args "$wl")"
    local tag=$config-$wl
    # shellcheck disable=SC2086
    rss_sampler "$OUT/$tag.rss" $nodes &
    local sampler=$!
    local c0 g0 c1 g1
    # shellcheck disable=SC2086
    c0=$(sum_cpu $nodes); g0=$(sum_cpu $gpids)
    log "$tag: $files x $size over $sessions sessions"
    "$LOADGEN" stream --host "$host" --port "$port" --user "$USER_NAME" --password "$PASSWORD" \
        --sessions "$sessions" --files "$files" --size "$size" --source-addrs "$src" \
        --prefix "$tag" --duration "$DURATION" --op-timeout 120 --json --quiet \
        >"$OUT/$tag.json" 2>"$OUT/$tag.err" || log "$tag: loadgen exit $? (see $OUT/$tag.err)"
    # shellcheck disable=SC2086
    c1=$(sum_cpu $nodes); g1=$(sum_cpu $gpids)
    touch "$OUT/$tag.rss.stop"; wait "$sampler" 2>/dev/null || true
    python3 - "$OUT/$tag.json" "$config" "$wl" "$files" $((c1 - c0)) $((g1 - g0)) "$TICKS" \
        "$(cat "$OUT/$tag.rss" 2>/dev/null || echo 0)" >>"$RESULTS" <<'EOF'
import json, sys
path, config, wl, files, cpu, gcpu, ticks, rss = sys.argv[1:]
try:
    r = json.load(open(path))
except Exception:
    r = {}
ok = r.get("files_ok", 0); b = r.get("bytes", 0)
cpu_s = int(cpu) / int(ticks); g_s = int(gcpu) / int(ticks)
per_file = 1000 * cpu_s / ok if ok else float("nan")
per_gb = cpu_s / (b / 1e9) if b else float("nan")
print("\t".join(str(x) for x in [config, wl, files, ok, round(r.get("elapsed_s", 0), 2),
      round(r.get("files_per_s", 0), 1), round(r.get("mb_per_s", 0), 1), round(cpu_s, 2),
      round(per_file, 3), round(per_gb, 2), round(int(rss) / 1024, 1), round(g_s, 2)]))
EOF
    tail -n 1 "$RESULTS" >&2
}

run_config_workload() {
    local config=$1 wl=$2 dir=$WORK/$1-$2
    mkdir -p "$dir"
    local gp="" nodes host port src
    case $config in
        local)
            node_start "$dir" n0 local 20000 20999 0
            nodes=$NODE_PID; host=127.0.0.1; port=$NODE_PORT; src=127.0.0.10-127.0.0.41
            measure "$config" "$wl" "$host" "$port" "$src" "$nodes" ""
            stop_pids "$NODE_PID"
            ;;
        s3-one)
            garage_start "$dir" 3 3
            gp="${GARAGE_PIDS[*]}"
            node_start "$dir" n0 "${GARAGE_EPS[0]}" 20000 20999 0
            nodes=$NODE_PID
            measure "$config" "$wl" 127.0.0.1 "$NODE_PORT" 127.0.0.10-127.0.0.41 "$nodes" "$gp"
            stop_pids "$NODE_PID"
            garage_stop
            ;;
        s3-two)
            garage_start "$dir" 3 3
            gp="${GARAGE_PIDS[*]}"
            node_start "$dir" n0 "${GARAGE_EPS[0]}" 20000 20999 1
            local p0=$NODE_PID c0=$NODE_PORT
            node_start "$dir" n1 "${GARAGE_EPS[1]}" 21000 21999 1
            local p1=$NODE_PID c1=$NODE_PORT
            haproxy_start "$dir" "$c0" 20000 20999 "$c1" 21000 21999
            measure "$config" "$wl" 127.0.0.2 "$FRONT_PORT" 127.0.0.10-127.0.0.41 "$p0 $p1" "$gp"
            stop_pids "$HAPROXY_PID" "$p0" "$p1"
            garage_stop
            ;;
        *) die "unknown config $config" ;;
    esac
    rm -rf "$dir"
}

# --- the cap test ------------------------------------------------------------------------------
cap_test() {
    local n=$1 dir=$WORK/cap
    mkdir -p "$dir"
    local need=$((n * 64 * 1024 * 1024 + 4 * 1024 * 1024 * 1024))
    local avail
    avail=$(df -B1 --output=avail "$WORK" | tail -1)
    [[ $avail -gt $need ]] || die "cap test: $n x 64 MiB needs $((need >> 30)) GiB free under $WORK, have $((avail >> 30)) GiB"
    garage_start "$dir" 1 1
    node_start "$dir" n0 "${GARAGE_EPS[0]}" 20000 $((20000 + n + 100)) 0
    local pid=$NODE_PID idle
    sleep 1
    idle=$(rss_kib "$pid")
    log "cap test: $n concurrent 64 MiB uploads, s3_memory_cap $((CAP >> 20)) MiB, idle RSS $((idle / 1024)) MiB"
    rss_sampler "$OUT/cap.rss" "$pid" &
    local sampler=$! c0 c1
    c0=$(cpu_ticks "$pid")
    "$LOADGEN" stream --host 127.0.0.1 --port "$NODE_PORT" --user "$USER_NAME" --password "$PASSWORD" \
        --sessions "$n" --files "$n" --size 64M --source-addrs 127.0.0.10-127.0.0.73 \
        --prefix cap --duration "$DURATION" --op-timeout 300 --json --quiet \
        >"$OUT/cap.json" 2>"$OUT/cap.err" || log "cap: loadgen exit $? (see $OUT/cap.err)"
    c1=$(cpu_ticks "$pid")
    touch "$OUT/cap.rss.stop"; wait "$sampler" 2>/dev/null || true
    local peak
    peak=$(cat "$OUT/cap.rss")
    python3 - "$OUT/cap.json" <<EOF
import json
r = json.load(open("$OUT/cap.json"))
print(f"cap test: {r['files_ok']}/{$n} x 64 MiB ok in {r['elapsed_s']:.1f} s, {r['mb_per_s']:.1f} MB/s, "
      f"server CPU {($c1 - $c0) / $TICKS:.1f} s")
print(f"peak RSS {$peak / 1024:.1f} MiB; idle {$idle / 1024:.1f} MiB + cap {$CAP / 1048576:.0f} MiB = "
      f"{($idle / 1024) + $CAP / 1048576:.1f} MiB: {'within' if $peak < $idle + $CAP / 1024 else 'ABOVE'}")
EOF
    stop_pids "$pid"
    garage_stop
    rm -rf "$dir"
}

log "output in $OUT; garage $("$GARAGE" --version 2>/dev/null | head -1); $(haproxy -v | head -1)"
if [[ $CAP_TEST -gt 0 ]]; then
    cap_test "$CAP_TEST"
    exit 0
fi
for wl in $WORKLOADS; do
    for config in $CONFIGS; do
        run_config_workload "$config" "$wl"
    done
done
echo
column -t -s $'\t' "$RESULTS"
python3 - "$RESULTS" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {(r["config"], r["workload"]): r for r in rows}
for wl in ("1M", "64M"):
    base = by.get(("local", wl))
    for cfg in ("s3-one", "s3-two"):
        r = by.get((cfg, wl))
        if base and r and float(base["cpu_s_per_gb"] or 0) > 0:
            ratio = float(r["cpu_s_per_gb"]) / float(base["cpu_s_per_gb"])
            print(f"{wl}: {cfg} server CPU per GB is {ratio:.2f}x local's (target <= 2x)")
EOF
