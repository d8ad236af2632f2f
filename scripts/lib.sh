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
