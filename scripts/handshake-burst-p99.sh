#!/usr/bin/env bash
# The latency of plain sessions on one core, alone and while a burst of TLS handshakes runs on the
# same core: does a burst of new FTPS sessions hurt the others enough to move handshakes off the
# core? One ringest with --threads 1; a "victim" loadgen (plain FTP, stream mode, 4 KiB files)
# reports its p50/p99 per file, once alone and once beside a burst loadgen doing stream-reconnect
# over TLS (every file a new control connection: a full handshake, plus a resumed one for its data
# connection). Interleaved rounds; prints one line per run. Bounded: every loadgen has --duration.
#
# Each round also runs the same burst without TLS, to tell the handshakes' cost from that of the
# connection churn and the burst client's own CPU (client and server share the machine's cores).
#
#   scripts/handshake-burst-p99.sh [ROUNDS] [BURST_FILES]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BURST=${2:-500}
BIN=${CARGO_TARGET_DIR:-target}/release
dir=$(mktemp -d)
"$BIN/ringest" serve --listen 127.0.0.1:0 --root "$dir/root" --user u --password p --threads 1 \
    >"$dir/out" 2>"$dir/err" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do grep -q "TLS certificate" "$dir/out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o "listening on 127.0.0.1:[0-9]*" "$dir/out" | cut -d: -f2)
cert=$(grep -o '"[^"]*tls-cert.pem"' "$dir/out" | tr -d '"')
victim() {
    "$BIN/loadgen" --port "$port" --user u --password p --sessions 4 --files 3000 --size 4K \
        --duration 60 --json --quiet --prefix "v$1" stream |
        python3 -c 'import json,sys; r=json.load(sys.stdin); l=r["latency_us"]; print("files/s %.0f p50 %.2f ms p99 %.2f ms" % (r["files_per_s"], l["p50"]/1000, l["p99"]/1000))'
}
burst() { # $1: tag, $2...: extra loadgen flags
    local tag=$1
    shift
    "$BIN/loadgen" --port "$port" --user u --password p "$@" --sessions 64 \
        --files "$BURST" --size 4K --duration 60 --json --quiet --prefix "b$tag" stream-reconnect \
        >"$dir/burst.json" &
    local pid=$!
    sleep 0.05
    local line
    line=$(victim "$tag")
    wait $pid
    echo "$line   (burst: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%d logins in %.2f s, TLS handshakes control %d data %d" % (r["files_ok"], r["elapsed_s"], r.get("tls_control_handshakes", 0), r.get("tls_data_handshakes", 0)))' "$dir/burst.json"))"
}
for r in $(seq "$ROUNDS"); do
    echo "round $r alone:       $(victim a$r)"
    echo "round $r TLS burst:   $(burst t$r --tls --ca "$cert")"
    echo "round $r plain burst: $(burst p$r)"
done
