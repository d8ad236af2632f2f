# Shared by the scripts in this directory: `source "$(dirname "$0")/lib.sh"`.

# ringest_port OUT PID: waits (10 s at most) for the "ringest: listening on ADDR" line a server
# started with `--listen 127.0.0.1:0` prints to OUT, and prints the port. Fails, saying so, if PID
# exits first or the line never comes.
ringest_port() {
    local out=$1 pid=$2 addr
    for _ in $(seq 100); do
        addr=$(sed -n 's/^ringest: listening on //p' "$out" 2>/dev/null | head -1)
        if [[ -n $addr ]]; then
            echo "${addr##*:}"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "ringest did not start listening (see $out and the server's stderr)" >&2
    return 1
}

# cpu_ticks PID: utime + stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat; the
# name in field 2 may hold spaces), 0 once the process is gone.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
