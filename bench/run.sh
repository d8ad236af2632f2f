#!/usr/bin/env bash
# End-to-end benchmark: ringest, vsftpd and Pure-FTPd side by side on loopback with the same loadgen
# scenarios, interleaved (A B C A B C ...), N runs each; results as JSON under bench/results/<ts>/ and
# a Markdown summary (bench/summarize.py). See bench/README.md.
#
#   bench/run.sh [--quick] [--scenarios 1,2,3] [--runs N] [--servers ringest,ringest-buffered,vsftpd,pureftpd]
#                [--auth hash|plain] [--no-build] [--results DIR] [--idle-sessions N] [--tls]
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
CACHE=$BENCH/.cache

QUICK=0
SCENARIOS=1,2,3,4,5,6,7
RUNS=3
SERVERS=ringest,ringest-buffered,vsftpd,pureftpd
AUTH=hash
BUILD=1
RESULTS=""
IDLE_SESSIONS=""
SRC_ADDRS=127.0.0.1-127.0.0.8
TLS=0

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while (( $# )); do
    case $1 in
        --quick) QUICK=1 ;;
        --scenarios) SCENARIOS=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --servers) SERVERS=$2; shift ;;
        --auth) AUTH=$2; shift ;;
        --no-build) BUILD=0 ;;
        --results) RESULTS=$2; shift ;;
        --idle-sessions) IDLE_SESSIONS=$2; shift ;;
        --tls) TLS=1 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
    shift
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs needs a positive number" >&2; exit 2; }
[[ $AUTH == hash || $AUTH == plain ]] || { echo "--auth is hash or plain" >&2; exit 2; }
(( EUID == 0 )) || { echo "run as root (installs packages, creates a user, runs vsftpd)" >&2; exit 2; }

TS=$(date +%Y%m%d-%H%M%S)
RESULTS=${RESULTS:-$BENCH/results/$TS}
mkdir -p "$RESULTS" "$CACHE"
WORK=$(mktemp -d /tmp/ringest-bench.XXXXXX)
mkdir -p "$WORK/bin" "$WORK/roots"
chattr +T "$WORK/roots" 2>/dev/null || true
# Every run's files stay until the end (large ones truncated, see lib.sh): make sure they fit.
NEED_GB=$(( QUICK ? 4 : 12 ))
FREE_GB=$(( $(df -Pk "$WORK/roots" | awk 'NR==2 {print $4}') / 1048576 ))
if (( FREE_GB < NEED_GB )); then
    echo "need ~${NEED_GB} GB free under $WORK for the runs' files (they are kept until the end); ${FREE_GB} GB free" >&2
    rm -rf "$WORK"
    exit 2
fi

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# FTPS (--tls): one certificate for every server; the clients trust it. Every record of the run says
# tls=1 and every scenario id ends in -tls, so FTPS and plain results cannot be mixed up. Without
# --tls all of these stay empty and nothing changes.
LOADGEN_TLS_ARGS=()
IDLE_TLS_ARGS=()
TLS_REC=()
SCEN_SUFFIX=""
if (( TLS )); then
    make_tls_cert
    loadgen_tls_args
    IDLE_TLS_ARGS=(--tls --ca "$TLS_CERT")
    TLS_REC=(--num tls=1)
    SCEN_SUFFIX=-tls
fi

SRV_PID=""
IDLE_PID=""
cleanup() {
    [[ -n $IDLE_PID ]] && kill -TERM "$IDLE_PID" 2>/dev/null
    [[ -n $SRV_PID ]] && kill -0 "$SRV_PID" 2>/dev/null && stop_server "$SRV_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

exec > >(tee -a "$RESULTS/run.log") 2>&1

# --- the scenarios --------------------------------------------------------------------------------
# id|group|kind|sessions|files|size|duration_s|est_s_per_run (for the ETA: ringest,vsftpd,pureftpd;
# runs that hit their bound take the bound whatever the scale, so those stay in --quick)
SCENARIO_TABLE=(
    "s1-stream-64|1|stream|64|20000|4K|90|3,12,6"
    "s1-stream-512|1|stream|512|20000|4K|90|4,90,16"
    "s2-reconnect-64|2|stream-reconnect|64|20000|4K|120|10,55,25"
    "s2-reconnect-512|2|stream-reconnect|512|20000|4K|120|10,120,30"
    "s3-1M-16|3|stream|16|2000|1M|180|4,4,4"
    "s4-2G-1|4|stream|1|1|2G|180|4,5,4"
    "s5-modeb-64|5|block|64|100000|4K|180|6,1,1"
    "s5-modeb-512|5|block|512|100000|4K|180|8,1,1"
    "s5-modeb-64-pipe|5|block-pipe|64|100000|4K|180|6,1,1"
    "s6-idle|6|idle|0|10000|0|300|8,40,20"
    "s7-20G-1|7|stream|1|1|20G|600|30,40,30"
    "s8-modee-p1-64|8|eblock-p1|64|100000|4K|180|6,1,1"
    "s8-modee-p4-64|8|eblock-p4|64|100000|4K|180|8,1,1"
    "s8-modee-p4-64M-4|8|eblock-p4|4|32|64M|180|10,1,1"
)
RINGEST_EXTRA=()

scale() { # files -> scaled for --quick
    local f=$1
    (( QUICK )) && f=$(( f / 10 > 0 ? f / 10 : 1 ))
    echo "$f"
}

selected=()
for row in "${SCENARIO_TABLE[@]}"; do
    IFS='|' read -r id group _ <<<"$row"
    [[ ,$SCENARIOS, == *,$group,* ]] || continue
    # MODE E data connections have no TLS (ringest answers 534, loadgen refuses eblock with --tls).
    if (( TLS )) && [[ $group == 8 ]]; then echo "skipping $id: MODE E has no TLS" >&2; continue; fi
    selected+=("$row")
done
(( ${#selected[@]} )) || { echo "no scenario selected by --scenarios $SCENARIOS" >&2; exit 2; }
IFS=',' read -r -a SRVS <<<"$SERVERS"
for s in "${SRVS[@]}"; do
    [[ $s == ringest || $s == ringest-buffered || $s == ringest-base || $s == vsftpd || $s == pureftpd ]] || { echo "unknown server $s" >&2; exit 2; }
    if [[ $s == ringest-base && ! -x ${RINGEST_BASE_BIN:-} ]]; then
        echo "--servers ringest-base needs RINGEST_BASE_BIN=/path/to/another/ringest" >&2; exit 2
    fi
done

# --- preparation ----------------------------------------------------------------------------------

log "results: $RESULTS"
if (( BUILD )); then
    log "building (cargo build --release -p ringest -p loadgen)"
    ( cd "$REPO" && cargo build --release -q -p ringest -p loadgen && cargo build --release -q --example fs_ceiling --example modeb_floor ) || die "build failed"
fi
# Private copies: others may rebuild target/release while we run. Cargo's CARGO_TARGET_DIR is
# honoured (relative to the repository, as cargo takes it from there).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO/$TARGET_DIR
cp "$TARGET_DIR/release/ringest" "$TARGET_DIR/release/loadgen" "$WORK/bin/" || die "no binaries in $TARGET_DIR/release"
[[ -n ${RINGEST_BASE_BIN:-} ]] && { cp "$RINGEST_BASE_BIN" "$WORK/bin/ringest-base" || die "cannot copy $RINGEST_BASE_BIN"; }
cp "$TARGET_DIR/release/examples/fs_ceiling" "$WORK/bin/" || die "no $TARGET_DIR/release/examples/fs_ceiling (cargo build --release --example fs_ceiling)"
cp "$TARGET_DIR/release/examples/modeb_floor" "$WORK/bin/" || die "no $TARGET_DIR/release/examples/modeb_floor (cargo build --release --example modeb_floor)"
RINGEST_BIN=$WORK/bin/ringest
LOADGEN_BIN=$WORK/bin/loadgen

raise_limits
for s in "${SRVS[@]}"; do
    case $s in
        vsftpd) ensure_vsftpd ;;
        pureftpd) ensure_pureftpd ;;
    esac
done
ensure_user

GIT_REV=$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)
RINGEST_VERSION="$("$RINGEST_BIN" --version 2>&1 | head -1) ($GIT_REV)"
LOADGEN_VERSION=$("$LOADGEN_BIN" --version 2>&1 | head -1)
log "ringest:   $RINGEST_VERSION"
log "loadgen:   $LOADGEN_VERSION"
[[ " ${SRVS[*]} " == *" vsftpd "* ]] && log "vsftpd:    $VSFTPD_VERSION ($VSFTPD_BIN)"
[[ " ${SRVS[*]} " == *" pureftpd "* ]] && log "pure-ftpd: $PUREFTPD_VERSION ($PUREFTPD_BIN)"
log "machine:   $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), nofile $(ulimit -n)"
if (( TLS )); then
    # The TLS flags are new in both tools: say so early when these binaries do not know them (every
    # run would then fail with server-start-failed / no-result, recorded as such).
    "$LOADGEN_BIN" --help 2>&1 | grep -q -- '--ca' || log "WARNING: this loadgen does not list --ca in --help: FTPS runs will fail (see lib.sh loadgen_tls_args)"
    "$RINGEST_BIN" serve --help 2>&1 | grep -q -- '--tls-cert' || log "WARNING: this ringest does not list --tls-cert in serve --help: its FTPS runs will fail (see lib.sh ringest_tls_args)"
fi
log "mode:      $( ((QUICK)) && echo quick || echo full ), runs $RUNS, servers $SERVERS, auth $AUTH$( ((TLS)) && echo ", FTPS (explicit, TLS required on control and data)" )"

python3 "$BENCH/benchlib.py" record --out "$RESULTS/env.json" \
    --set "ringest=$RINGEST_VERSION" --set "loadgen=$LOADGEN_VERSION" \
    --set "vsftpd=${VSFTPD_VERSION:-}" --set "pureftpd=${PUREFTPD_VERSION:-}" \
    --set "kernel=$(uname -r)" --num "cpus=$(nproc)" --set "loadavg_start=$(cat /proc/loadavg)" \
    --set "mode=$( ((QUICK)) && echo quick || echo full )" --num "runs=$RUNS" --set "servers=$SERVERS" \
    --set "scenarios=$SCENARIOS" --set "auth=$AUTH" --set "source_addrs=$SRC_ADDRS" \
    --set "started=$(date -Is)" --set "vsftpd_isolate=${VSFTPD_ISOLATE:-NO}"
cp "$BENCH/configs/vsftpd.conf.in" "$RESULTS/vsftpd.conf.in"
if (( TLS )); then
    ringest_tls_args; pureftpd_tls_args
    python3 - "$RESULTS/env.json" "$TLS_FINGERPRINT" "${RINGEST_TLS_ARGS[*]}" "${LOADGEN_TLS_ARGS[*]}" "${PUREFTPD_TLS_ARGS[*]}" <<'EOF'
import json, sys
path, fp, rg, lg, pf = sys.argv[1:6]
with open(path) as f:
    env = json.load(f)
env.update(tls=True, tls_cert_sha256=fp, tls_ringest_args=rg, tls_loadgen_args=lg, tls_pureftpd_args=pf,
           tls_vsftpd_conf="vsftpd-tls.conf.in")
with open(path, "w") as f:
    json.dump(env, f, indent=1, sort_keys=True)
EOF
    cp "$BENCH/configs/vsftpd-tls.conf.in" "$RESULTS/vsftpd-tls.conf.in"
    cp "$TLS_CERT" "$RESULTS/tls-cert.pem"
fi

# --- ETA ----------------------------------------------------------------------------------------

TOTAL_EST=0
PLAN=()   # "row|run|server|est"
for row in "${selected[@]}"; do
    IFS='|' read -r id group kind sess files size dur est <<<"$row"
    for ((r = 1; r <= RUNS; r++)); do
        for s in "${SRVS[@]}"; do
            IFS=',' read -r e_r e_v e_p <<<"$est"
            case $s in ringest) e=$e_r ;; vsftpd) e=$e_v ;; *) e=$e_p ;; esac
            if [[ $kind == block* && $s != ringest* ]] || [[ $kind == eblock-* && $s != ringest* ]]; then
                (( r == 1 )) || continue   # peers: one refusal probe
            fi
            # The buffered variant only where files are large enough for direct I/O to matter.
            if [[ $s == ringest-buffered && $size != *M && $size != *G ]]; then continue; fi
            (( QUICK && e < 90 )) && e=$(( (e + 4) / 5 ))
            e=$(( e + 3 ))                 # start, stop, clean-up
            PLAN+=("$row|$r|$s|$e")
            TOTAL_EST=$(( TOTAL_EST + e ))
        done
        if [[ $kind == block* ]]; then
            PLAN+=("$row|$r|fs_ceiling|10")
            TOTAL_EST=$(( TOTAL_EST + 10 ))
        fi
    done
done
log "plan: ${#PLAN[@]} runs, estimated $(( TOTAL_EST / 60 )) min $(( TOTAL_EST % 60 )) s"
START=$SECONDS
DONE_EST=0

fmt_t() { printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )); }

# --- one run ------------------------------------------------------------------------------------

RUN_IDX=0

lg_run() { # id kind sessions files size dur server run
    local id=$1 kind=$2 sess=$3 files=$4 size=$5 dur=$6 srv=$7 run=$8
    local dir="$RESULTS/$id" base
    mkdir -p "$dir"
    base="$dir/$srv-r$run"
    local probe=0
    if [[ $kind == block* && $srv != ringest* ]] || [[ $kind == eblock-* && $srv != ringest* ]]; then
        probe=1; sess=8; files=100; dur=20   # peers: show the refusal of MODE B / E, nothing more
    fi
    # eblock-pN: loadgen's eblock scenario with N data connections per session.
    local lg_scenario=("$kind")
    [[ $kind == eblock-p* ]] && lg_scenario=(--parallel "${kind#eblock-p}" eblock)
    # block-pipe: MODE B with each session's next STOR sent before the last file's 250 is read.
    [[ $kind == block-pipe ]] && lg_scenario=(--pipeline block)
    RUN_IDX=$((RUN_IDX + 1))
    local root port
    root=$(new_root "$RUN_IDX")
    port=$(free_port "${PORT_BASE[$srv]}")
    "start_$srv" "$root" "$port" "$base.server.log"
    local started=1
    wait_listening "$SRV_PID" "$port" 15 || started=0
    echo "$SRV_CMD" >"$base.server.cmd"
    if (( ! started )); then
        log "  $srv did not start listening on $port (see $base.server.log)"
        stop_server "$SRV_PID"; SRV_PID=""
        drop_root "$root"
        python3 "$BENCH/benchlib.py" record --out "$base.json" --set "server=$srv" --set "scenario=$id" \
            --set "kind=$kind" --num "run=$run" --set "status=server-start-failed" --set "server_exit=$SRV_EXIT" "${TLS_REC[@]}"
        return
    fi
    SRV_MAIN=$(main_of "$SRV_PID")
    python3 "$BENCH/benchlib.py" cpu "$SRV_PID" >"$base.cpu0"
    python3 "$BENCH/benchlib.py" machine >"$base.mach0"
    python3 "$BENCH/benchlib.py" meminfo >"$base.mem0"
    LOADGEN_PASSWORD=$BENCH_PASSWORD python3 "$BENCH/benchlib.py" exec --timeout $((dur + 60)) \
        --stdout "$base.loadgen.json" --stderr "$base.loadgen.err" --meta "$base.exec.json" -- \
        "$LOADGEN_BIN" --port "$port" --user "$BENCH_USER" --json --quiet --source-addrs "$SRC_ADDRS" \
        --duration "$dur" --sessions "$sess" --files "$files" --size "$size" "${LOADGEN_TLS_ARGS[@]}" "${lg_scenario[@]}"
    python3 "$BENCH/benchlib.py" machine >"$base.mach1"
    python3 "$BENCH/benchlib.py" meminfo >"$base.mem1"
    local left alive=1
    left=$(python3 "$BENCH/benchlib.py" settle "$SRV_PID" 15 "$SRV_MAIN")
    python3 "$BENCH/benchlib.py" cpu "$SRV_PID" >"$base.cpu1"
    kill -0 "$SRV_MAIN" 2>/dev/null || alive=0
    local disk
    disk=$(find "$root" -type f -printf '%s %f\n' | awk '{n++; b+=$1; if (substr($2,1,1)==".") h++} END {printf "%d %d %d", n, b, h}')
    read -r dfiles dbytes dhidden <<<"$disk"
    stop_server "$SRV_PID"; SRV_PID=""
    drop_root "$root"
    timeout 120 sync
    python3 "$BENCH/benchlib.py" record --out "$base.json" --set "server=$srv" --set "scenario=$id" \
        --set "kind=$kind" --num "run=$run" --num "probe=$probe" --num "sessions=$sess" --num "files=$files" \
        --set "size=$size" --num "duration_bound_s=$dur" --json "loadgen=$base.loadgen.json" \
        --json "meminfo_before=$base.mem0" --json "meminfo_after=$base.mem1" \
        --json "exec=$base.exec.json" --json "cpu_before=$base.cpu0" --json "cpu_after=$base.cpu1" \
        --json "machine_before=$base.mach0" --json "machine_after=$base.mach1" \
        --num "reaper=1" --num "server_alive_after=$alive" --num "server_children_left=$left" --set "server_exit=$SRV_EXIT" \
        --num "disk_files=$dfiles" --num "disk_bytes=$dbytes" --num "disk_hidden_files=$dhidden" \
        --set "server_cmd=$SRV_CMD" --set "loadavg=$(cat /proc/loadavg)" "${TLS_REC[@]}"
    rm -f "$base.cpu0" "$base.cpu1" "$base.mach0" "$base.mach1" "$base.mem0" "$base.mem1"
}

# The file system's own ceiling for the same 4 KiB files (no network, no FTP), in the same run as
# MODE B so both meet the same machine state; beside it, what the socket calls of a pipelined MODE
# B upload alone cost each side (modeb_floor): the ceiling plus the server's share is the least CPU
# per file any MODE B server can spend here.
ceiling_run() { # id files run
    local id=$1 files=$2 run=$3
    local dir="$RESULTS/$id" base
    mkdir -p "$dir"
    base="$dir/fs_ceiling-r$run"
    RUN_IDX=$((RUN_IDX + 1))
    local root
    root=$(new_root "$RUN_IDX")
    local out rc
    out=$(timeout 600 "$WORK/bin/fs_ceiling" --keep "$root/ceiling" "$files" 4096 2 2>&1); rc=$?
    drop_root "$root"
    local floor
    floor=$(timeout 300 "$WORK/bin/modeb_floor" "$files" 4096 64 2>&1) || floor="modeb_floor failed: $floor"
    python3 "$BENCH/benchlib.py" record --out "$base.json" --set "server=fs_ceiling" --set "scenario=$id" \
        --set "kind=fs_ceiling" --num "run=$run" --num "files=$files" --num "rc=$rc" --set "output=$out" \
        --set "floor_output=$floor" \
        --set "loadavg=$(cat /proc/loadavg)" "${TLS_REC[@]}"
}

idle_run() { # id sessions dur server run
    local id=$1 sess=$2 dur=$3 srv=$4 run=$5
    local dir="$RESULTS/$id" base
    mkdir -p "$dir"
    base="$dir/$srv-r$run"
    RUN_IDX=$((RUN_IDX + 1))
    local root port
    root=$(new_root "$RUN_IDX")
    port=$(free_port "${PORT_BASE[$srv]}")
    "start_$srv" "$root" "$port" "$base.server.log"
    echo "$SRV_CMD" >"$base.server.cmd"
    if ! wait_listening "$SRV_PID" "$port" 15; then
        log "  $srv did not start listening on $port (see $base.server.log)"
        stop_server "$SRV_PID"; SRV_PID=""
        drop_root "$root"
        python3 "$BENCH/benchlib.py" record --out "$base.json" --set "server=$srv" --set "scenario=$id" \
            --set "kind=idle" --num "run=$run" --set "status=server-start-failed" --set "server_exit=$SRV_EXIT" "${TLS_REC[@]}"
        return
    fi
    SRV_MAIN=$(main_of "$SRV_PID")
    sleep 0.5
    python3 "$BENCH/benchlib.py" mem "$SRV_PID" >"$base.mem0"
    python3 "$BENCH/benchlib.py" cpu "$SRV_PID" >"$base.cpu0"
    rm -f "$base.ready.json"
    IDLE_PASSWORD=$BENCH_PASSWORD python3 "$BENCH/idle.py" --port "$port" --user "$BENCH_USER" \
        --sessions "$sess" --source-addrs "$SRC_ADDRS" --concurrency 32 --login-timeout "$dur" --hold 120 "${IDLE_TLS_ARGS[@]}" \
        --ready-file "$base.ready.json" >"$base.idle.json" 2>"$base.idle.err" &
    IDLE_PID=$!
    local n=$(( (dur + 60) * 10 ))
    while [[ ! -f $base.ready.json ]] && kill -0 "$IDLE_PID" 2>/dev/null && (( n-- > 0 )); do sleep 0.1; done
    sleep 1   # let the last sessions finish their set-up
    python3 "$BENCH/benchlib.py" mem "$SRV_PID" >"$base.mem1"
    kill -TERM "$IDLE_PID" 2>/dev/null
    n=300
    while kill -0 "$IDLE_PID" 2>/dev/null && (( n-- > 0 )); do sleep 0.1; done
    kill -KILL "$IDLE_PID" 2>/dev/null
    wait "$IDLE_PID" 2>/dev/null
    IDLE_PID=""
    local left alive=1
    left=$(python3 "$BENCH/benchlib.py" settle "$SRV_PID" 60 "$SRV_MAIN")
    python3 "$BENCH/benchlib.py" cpu "$SRV_PID" >"$base.cpu1"
    kill -0 "$SRV_MAIN" 2>/dev/null || alive=0
    stop_server "$SRV_PID"; SRV_PID=""
    drop_root "$root"
    python3 "$BENCH/benchlib.py" record --out "$base.json" --set "server=$srv" --set "scenario=$id" \
        --set "kind=idle" --num "run=$run" --num "sessions=$sess" --num "duration_bound_s=$dur" \
        --json "idle=$base.idle.json" --json "ready=$base.ready.json" \
        --json "mem_before=$base.mem0" --json "mem_after=$base.mem1" \
        --json "cpu_before=$base.cpu0" --json "cpu_after=$base.cpu1" \
        --num "reaper=1" --num "server_alive_after=$alive" --num "server_children_left=$left" --set "server_exit=$SRV_EXIT" \
        --set "server_cmd=$SRV_CMD" --set "loadavg=$(cat /proc/loadavg)" "${TLS_REC[@]}"
    rm -f "$base.cpu0" "$base.cpu1" "$base.mem0" "$base.mem1"
}

# --- the loop: scenario by scenario, run by run, the servers interleaved ---------------------------

k=0
for step in "${PLAN[@]}"; do
    IFS='|' read -r id group kind sess files size dur est r s e <<<"$step"
    id+=$SCEN_SUFFIX
    k=$((k + 1))
    files=$(scale "$files")
    if (( QUICK )) && [[ $size == 2G ]]; then size=256M; fi
    if (( QUICK )) && [[ $size == 20G ]]; then size=2G; fi
    el=$(( SECONDS - START ))
    if (( DONE_EST > 0 )); then eta=$(( (TOTAL_EST - DONE_EST) * el / DONE_EST )); else eta=$TOTAL_EST; fi
    log "[$k/${#PLAN[@]}] $id $s run $r  (elapsed $(fmt_t $el), remaining ~$(fmt_t $eta))"
    if [[ $kind == idle ]]; then
        n=${IDLE_SESSIONS:-$files}
        idle_run "$id" "$n" "$dur" "$s" "$r"
    elif [[ $s == fs_ceiling ]]; then
        ceiling_run "$id" "$files" "$r"
    else
        lg_run "$id" "$kind" "$sess" "$files" "$size" "$dur" "$s" "$r"
    fi
    python3 "$BENCH/summarize.py" --line "$RESULTS/$id/$s-r$r.json" | sed 's/^/    /'
    DONE_EST=$(( DONE_EST + e ))
done

log "all runs done in $(fmt_t $(( SECONDS - START )))"
python3 "$BENCH/summarize.py" "$RESULTS" | tee "$RESULTS/summary.md"
log "results: $RESULTS (summary.md)"
