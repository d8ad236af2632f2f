#!/usr/bin/env bash
# Compares the two upload data paths (fixed = recv into registered buffers + WRITE_FIXED, splice =
# socket -> pipe -> file) side by side: one large file (sent with curl from a file in the page cache,
# so the client is not the bottleneck), and many 4 KiB files (loadgen, 64 sessions). Reports MB/s,
# files/s, and the server's CPU seconds (user+sys, all threads including io-wq workers, from
# /proc/PID/stat) per GB received. Each run writes into a fresh directory; all of them are deleted
# only at the end, because creating files right after deleting many costs ext4 extra (its recently-deleted inode scan).
#
# Usage: scripts/datapath-bench.sh [ROUNDS] [BIG_SIZE] [SMALL_FILES]   (defaults: 3 1G 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ROUNDS=${1:-3}
BIG=${2:-1G}
SMALL=${3:-10000}
cargo build --release -q -p ringest -p loadgen
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/release/ringest
LG=$TARGET_DIR/release/loadgen
WORK=$(mktemp -d /tmp/ringest-dpbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
TCK=$(getconf CLK_TCK)

run_one() { # path scenario-args... -> prints "MBps filesps cpu_s_per_GB"
    local path=$1; shift
    local root="$WORK/root-$path-$RANDOM"
    mkdir -p "$root"
    "$BIN" serve --listen 127.0.0.1:0 --root "$root" --user bench --password bench \
        --data-path "$path" >"$WORK/out" 2>"$WORK/err" &
    local pid=$!
    local port
    port=$(ringest_port "$WORK/out" "$pid")
    local before after
    before=$(cpu_ticks "$pid")
    if [ "$1" = big ]; then
        local t0 t1
        t0=$(date +%s.%N)
        curl -sS --max-time 600 -T "$WORK/big.bin" "ftp://bench:bench@127.0.0.1:$port/big.bin"
        t1=$(date +%s.%N)
        python3 -c "import json,os,sys; n=os.path.getsize(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); json.dump({'bytes':n,'mb_per_s':n/t/1e6,'files_per_s':1/t,'files_ok':1}, open(sys.argv[4],'w'))" "$WORK/big.bin" "$t0" "$t1" "$WORK/json"
    else
        "$LG" --port "$port" --user bench --password bench --quiet --json --duration 600 "$@" stream >"$WORK/json"
    fi
    after=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$WORK/json" "$((after - before))" "$TCK" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j
cpu = int(sys.argv[2]) / int(sys.argv[3])
gb = j["bytes"] / 1e9
print(f"{j['mb_per_s']:.1f} {j['files_per_s']:.1f} {cpu / gb if gb else 0:.3f} {j['files_ok']}")
PY
}

head -c "$(numfmt --from=iec "$BIG")" /dev/urandom >"$WORK/big.bin"
cat "$WORK/big.bin" >/dev/null
printf '%-8s %-10s %10s %10s %12s\n' path workload MB/s files/s cpu-s/GB
for round in $(seq "$ROUNDS"); do
    for path in fixed splice; do
        read -r mbps fps cpu ok < <(run_one "$path" big)
        printf '%-8s %-10s %10s %10s %12s\n' "$path" "1x$BIG" "$mbps" "$fps" "$cpu"
        read -r mbps fps cpu ok < <(run_one "$path" --sessions 64 --files "$SMALL" --size 4K)
        printf '%-8s %-10s %10s %10s %12s\n' "$path" "${SMALL}x4K" "$mbps" "$fps" "$cpu"
    done
done
