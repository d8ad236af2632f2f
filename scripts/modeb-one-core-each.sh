#!/usr/bin/env bash
# MODE B 4 KiB against fs_ceiling with the same cores: ringest with one core thread on CPU 0 and
# loadgen alone on CPU 1, then fs_ceiling with one thread on CPU 0, ROUNDS times. bench/run.sh
# gives the server both cores and its client shares them, while fs_ceiling has both to itself; here
# the server and the ceiling each get one core and the client gets the other, as when it runs on
# another machine. Prints files/s and CPU per file of each, and their ratios.
#
# Usage: scripts/modeb-one-core-each.sh [DIR]   (builds first; honours CARGO_TARGET_DIR)
# DIR: where the files go, a new directory made under it (default /var/tmp). The files are kept,
# and the script says where: on ext4 without a journal, creating files within minutes of deleting
# many makes ext4 scan past the recently deleted inodes, which swamps the measurement (a run right
# after a removal here measured 0.3x-2x at random). Remove them when done, and wait five minutes
# before measuring on that file system again, or pass CLEAN=1 to remove them at the end.
# Environment: RINGEST_BIN (another server build), ROUNDS (default 3), FILES (default 100000),
# SESSIONS (default 64), PIPELINE (default 1: loadgen --pipeline).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[[ $(nproc) -ge 2 ]] || { echo "needs two CPUs" >&2; exit 1; }
cargo build --release -q -p ringest -p loadgen
cargo build --release -q --example fs_ceiling
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${RINGEST_BIN:-$TARGET_DIR/release/ringest}
LG=$TARGET_DIR/release/loadgen
CEIL=$TARGET_DIR/release/examples/fs_ceiling
FILES=${FILES:-100000}
WORK=$(mktemp -d "${1:-/var/tmp}/ringest-onecore.XXXXXX")
pid=""
finish() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    if [[ ${CLEAN:-0} == 1 ]]; then rm -rf "$WORK"; else echo "files kept under $WORK"; fi
}
trap finish EXIT
pipeline=()
[[ ${PIPELINE:-1} == 1 ]] && pipeline=(--pipeline)
for round in $(seq "${ROUNDS:-3}"); do
    root="$WORK/root$round"
    mkdir -p "$root"
    taskset -c 0 "$BIN" serve --threads 1 --listen 127.0.0.1:0 --root "$root" --user u --password p \
        --max-sessions 20000 --max-sessions-per-ip 0 >"$WORK/srv.out" 2>"$WORK/srv.err" &
    pid=$!
    port=$(ringest_port "$WORK/srv.out" "$pid")
    c0=$(cpu_ticks "$pid")
    /usr/bin/time -f "%U %S" -o "$WORK/lg.time" taskset -c 1 "$LG" --threads 1 --pin off \
        --port "$port" --user u --password p --quiet --json --source-addrs 127.0.0.1-127.0.0.8 \
        --duration 120 --sessions "${SESSIONS:-64}" --files "$FILES" --size 4K "${pipeline[@]}" block \
        >"$WORK/lg.json"
    c1=$(cpu_ticks "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    # Whole output, first line taken after: `| head -1` can close the pipe before fs_ceiling's
    # second line, and a Rust program panics on a broken stdout.
    ceiling=$(taskset -c 0 "$CEIL" --keep "$WORK/ceiling$round" "$FILES" 4096 1)
    ceiling=${ceiling%%$'\n'*}
    python3 - "$WORK/lg.json" "$WORK/lg.time" "$(( c1 - c0 ))" "$(getconf CLK_TCK)" "$ceiling" "$round" <<'EOF'
import json, re, sys
j = json.load(open(sys.argv[1]))
lg = sum(map(float, open(sys.argv[2]).read().split()[-2:]))
ticks, hz, ceiling, rnd = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
n = j["files_ok"]
if n == 0:
    sys.exit(f"round {rnd}: no file landed")
m = re.search(r"([0-9.]+) files/s, ([0-9.]+) us CPU per file", ceiling)
if not m:
    sys.exit(f"round {rnd}: fs_ceiling said {ceiling!r}")
cfps, ccpu = float(m.group(1)), float(m.group(2))
fps, cpu = j["files_per_s"], ticks / hz / n * 1e6
print(f"round {rnd}: ringest {fps:,.0f} files/s, {cpu:.1f} us CPU per file (loadgen {lg / n * 1e6:.1f}); "
      f"fs_ceiling {cfps:,.0f} files/s, {ccpu:.1f} us; ratios {fps / cfps:.2f}x files/s, {cpu / ccpu:.2f}x CPU")
EOF
done
