#!/usr/bin/env bash
# Small-file latency of other sessions while four 2 GiB uploads run, with direct I/O on, off, and
# with no big uploads at all: loadgen `stream` (16 sessions, 10,000 x 4 KiB) reports p50/p99 per
# variant, 3 interleaved rounds. Every load is bounded (curl --max-time, loadgen --duration).
#
# Usage: scripts/p99-beside-big-uploads.sh   (builds first; honours CARGO_TARGET_DIR)
# Environment: RINGEST_BIN (another server build to measure), ROUNDS (default "1 2 3"), MODES
# (default "none on off"), CURL_LIMIT (e.g. 200M: hold each big upload to that rate, to compare
# builds or modes at the same upload rate).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
cargo build --release -q -p ringest -p loadgen
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${RINGEST_BIN:-$TARGET_DIR/release/ringest}
LG=$TARGET_DIR/release/loadgen
SRC=/dev/shm/ringest-p99-2g
[[ -f $SRC ]] || head -c 2G /dev/urandom >"$SRC"
WORK=$(mktemp -d /var/tmp/ringest-p99.XXXXXX)
trap 'rm -rf "$WORK" "$SRC"' EXIT
for round in ${ROUNDS:-1 2 3}; do
    for mode in ${MODES:-none on off}; do
        root=$(mktemp -d "$WORK/root.XXXXXX")
        direct=$mode; [[ $mode == none ]] && direct=auto
        "$BIN" serve --listen 127.0.0.1:0 --root "$root" --user u --password p --direct-io "$direct" \
            >"$WORK/srv.out" 2>"$WORK/srv.err" &
        pid=$!
        port=$(ringest_port "$WORK/srv.out" "$pid")
        uploads=()
        if [[ $mode != none ]]; then
            for k in 1 2 3 4; do
                curl -sS --max-time 120 ${CURL_LIMIT:+--limit-rate "$CURL_LIMIT"} -T "$SRC" "ftp://u:p@127.0.0.1:$port/big$k.bin" & uploads+=($!)
            done
            sleep 1
        fi
        out=$(timeout 100 "$LG" --port "$port" --user u --password p --json --quiet --duration 60 \
            --sessions 16 --files 10000 --size 4K stream)
        for u in "${uploads[@]}"; do wait "$u" || true; done
        kill "$pid"; wait "$pid" 2>/dev/null || true
        echo "round $round, big uploads: $mode: $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_us"]; print(round(d["files_per_s"]), "files/s, p50", l.get("p50"), "us, p99", l.get("p99"), "us")')"
        rm -rf "$root"
    done
done
