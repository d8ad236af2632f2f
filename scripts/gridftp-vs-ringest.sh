#!/usr/bin/env bash
# MODE E, ringest beside globus-gridftp-server (-single: one session, its CPU from /usr/bin/time),
# 3 interleaved rounds. Needs globus-gass-copy-progs, globus-gridftp-server-progs, a release build.
#   (default)  5000 x 4 KiB with globus-url-copy -fast (and -fast -pp): wall s, server CPU ticks
#              (1/100 s), files/s
#   BIG=1      one 2 GiB file from /dev/shm up and down with -p 1 and -p 4: MB/s and server CPU-s/GB
#              (downloads land in /dev/shm)
# BASE=dir puts the servers' roots there (e.g. a fresh ext4 mount: ext4 makes file creation pay for
# recently deleted inodes, so a disk that just had thousands of files removed skews files/s).
set -u
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
keep=()
N=${N:-5000}
src=${SRC:-/tmp/ringest-gridftp-bench-src}
if [ ! -d $src ]; then mkdir -p $src; for i in $(seq 1 $N); do head -c 4096 /dev/urandom > $src/f$i.bin; done; fi
cpu() { awk '{print $14+$15+$16+$17}' /proc/$1/stat; }
start_server() { # $1 = ringest|gridftp, $2 = dir; sets pid, url (the server's root)
  if [ $1 = ringest ]; then
    "$BIN/ringest" serve --listen 127.0.0.1:0 --root $2/root --user u --password p --tls off > $2/out 2>$2/err & pid=$!
    sleep 0.8; port=$(grep -o "listening on 127.0.0.1:[0-9]*" $2/out | cut -d: -f2); url="ftp://u:p@127.0.0.1:$port"
  else
    port=$((26500 + RANDOM % 500)); mkdir -p $2/root; chmod 777 $2/root
    /usr/bin/time -o $2/time -f "%U %S" globus-gridftp-server -aa -anonymous-user nobody -p $port -single -data-interface 127.0.0.1 -control-interface 127.0.0.1 > $2/out 2>&1 & pid=$!
    sleep 0.8; url="ftp://127.0.0.1:$port$2/root"
  fi
}
stop_server() { # $1 = ringest|gridftp, $2 = dir; prints the server's CPU ticks since $c0
  if [ $1 = ringest ]; then c1=$(cpu $pid); kill $pid; wait $pid 2>/dev/null; echo $((c1 - c0))
  else wait $pid 2>/dev/null; tail -n 1 $2/time | awk '{printf "%d", ($1+$2)*100}'; fi
}
if [ -n "${BIG:-}" ]; then
  big=/dev/shm/ringest-gridftp-big.bin
  [ -f $big ] || head -c $((2048 * 1048576)) /dev/urandom > $big
  for round in 1 2 3; do
    for server in ringest gridftp; do
      for p in 1 4; do
        for dir in up down; do
          d=$(mktemp -d -p ${BASE:-/tmp}); chmod 777 $d; start_server $server $d
          c0=$( [ $server = ringest ] && cpu $pid || echo 0 ); s=$(date +%s.%N)
          if [ $dir = up ]; then
            timeout 300 globus-url-copy -p $p file://$big $url/big.bin > $d/guc.log 2>&1; rc=$?
          else
            cp $big $d/root/big.bin; chmod 644 $d/root/big.bin; sync; s=$(date +%s.%N)
            timeout 300 globus-url-copy -p $p $url/big.bin file:///dev/shm/ringest-gridftp-down.bin > $d/guc.log 2>&1; rc=$?
          fi
          e=$(date +%s.%N); ticks=$(stop_server $server $d)
          ok=$( [ $dir = up ] && cmp -s $big $d/root/big.bin && echo same || { [ $dir = down ] && cmp -s $big /dev/shm/ringest-gridftp-down.bin && echo same; } || echo DIFFERS)
          echo "round $round $server $dir -p $p rc=$rc $ok wall=$(echo "$e-$s" | bc) s MB/s=$(echo "2048/($e-$s)" | bc) server_cpu_s_per_GB=$(echo "scale=2; $ticks/100/2" | bc)"
          rm -rf $d /dev/shm/ringest-gridftp-down.bin
        done
      done
    done
  done
  exit 0
fi
for round in 1 2 3; do
  for server in ringest gridftp; do
    for pp in "" "-pp"; do
      d=$(mktemp -d -p ${BASE:-/tmp}); chmod 777 $d; start_server $server $d
      c0=$( [ $server = ringest ] && cpu $pid || echo 0 ); s=$(date +%s.%N)
      timeout 300 globus-url-copy -fast $pp -cd -r file://$src/ $url/dst/ > $d/guc.log 2>&1; rc=$?
      e=$(date +%s.%N); ticks=$(stop_server $server $d)
      n=$(ls $d/root/dst | wc -l)
      echo "round $round $server -fast $pp rc=$rc files=$n wall=$(echo "$e-$s" | bc) s server_cpu=$ticks ticks files/s=$(echo "$n/($e-$s)" | bc)"
      keep+=("$d")
    done
  done
done
# The runs' directories are removed only now: deleting thousands of inodes between runs makes the
# next run's creates pay ext4's recently-deleted inode scan, whichever server it is.
rm -rf "${keep[@]}"
