#!/usr/bin/env bash
# MODE E small files: 5000 x 4 KiB with globus-url-copy -fast (and -fast -pp) into ringest and into
# globus-gridftp-server (-single: one session, its CPU from /usr/bin/time), 3 interleaved rounds;
# wall seconds, server CPU ticks (1/100 s) and files/s. Needs globus-gass-copy-progs,
# globus-gridftp-server-progs and a release build.
set -u
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
keep=()
N=${N:-5000}
src=${SRC:-/tmp/ringest-gridftp-bench-src}
if [ ! -d $src ]; then mkdir -p $src; for i in $(seq 1 $N); do head -c 4096 /dev/urandom > $src/f$i.bin; done; fi
cpu() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
for round in 1 2 3; do
  for server in ringest gridftp; do
    for pp in "" "-pp"; do
      d=$(mktemp -d); chmod 777 $d
      if [ $server = ringest ]; then
        "$BIN/ringest" serve --listen 127.0.0.1:0 --root $d/root --user u --password p --tls off > $d/out 2>$d/err & pid=$!
        sleep 0.8; port=$(grep -o "listening on 127.0.0.1:[0-9]*" $d/out | cut -d: -f2); url="ftp://u:p@127.0.0.1:$port/dst/"
      else
        port=$((26500 + RANDOM % 500))
        /usr/bin/time -o $d/time -f "%U %S" globus-gridftp-server -aa -anonymous-user nobody -p $port -single -data-interface 127.0.0.1 -control-interface 127.0.0.1 > $d/out 2>&1 & pid=$!
        sleep 0.8; url="ftp://127.0.0.1:$port$d/dst/"
      fi
      c0=$( [ $server = ringest ] && cpu $pid || echo 0 ); s=$(date +%s.%N)
      timeout 300 globus-url-copy -fast $pp -cd -r file://$src/ $url > $d/guc.log 2>&1; rc=$?
      e=$(date +%s.%N)
      if [ $server = ringest ]; then c1=$(cpu $pid); else wait $pid 2>/dev/null; c1=$(awk '{printf "%d", ($1+$2)*100}' $d/time); fi
      n=$( [ $server = ringest ] && ls $d/root/dst | wc -l || ls $d/dst | wc -l )
      echo "round $round $server -fast $pp rc=$rc files=$n wall=$(echo "$e-$s" | bc) s server_cpu=$(( c1 - c0 )) ticks files/s=$(echo "$n/($e-$s)" | bc)"
      kill $pid 2>/dev/null; wait $pid 2>/dev/null; keep+=("$d")
    done
  done
done
# The runs' directories are removed only now: deleting thousands of inodes between runs makes the
# next run's creates pay ext4's recently-deleted inode scan, whichever server it is.
rm -rf "${keep[@]}"
