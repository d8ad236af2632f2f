# shellcheck shell=bash
# Functions for bench/run.sh: installing the peers, the benchmark user, starting/stopping servers,
# fresh root directories. Sourced, not run. Expects BENCH (this directory), CACHE, WORK, RESULTS.

BENCH_USER=${BENCH_USER:-ftpbench}
# Ports: control ports are searched upwards from these bases; passive ranges are fixed, disjoint,
# below the ephemeral range (32768-60999 here) so client connects never take them, and clear of 2024.
# Pure-FTPd forces its client limit (-c) down to half the size of its passive range, so it needs
# 20,000+ ports for 10,000 idle sessions: 11000-32000 allows 10,500.
declare -A PORT_BASE=([ringest]=2100 [ringest-buffered]=2150 [ringest-base]=2170 [vsftpd]=2200 [pureftpd]=2300)
declare -A PASV_LO=([ringest]=3000 [ringest-buffered]=3000 [ringest-base]=3000 [vsftpd]=7000 [pureftpd]=11000)
declare -A PASV_HI=([ringest]=6999 [ringest-buffered]=6999 [ringest-base]=6999 [vsftpd]=10999 [pureftpd]=32000)

# FTPS (--tls): off unless run.sh sets TLS=1. One certificate for every server (make_tls_cert).
TLS=${TLS:-0}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- installation ------------------------------------------------------------------------------

ensure_vsftpd() {
    if ! dpkg-query -W -f='${Status}' vsftpd 2>/dev/null | grep -q 'ok installed'; then
        log "installing vsftpd (apt-get)"
        if ! apt-get install -y -q vsftpd >"$WORK/apt-vsftpd.log" 2>&1; then
            apt-get update -q >>"$WORK/apt-vsftpd.log" 2>&1 || true
            apt-get install -y -q vsftpd >>"$WORK/apt-vsftpd.log" 2>&1 || die "apt-get install vsftpd failed (see $WORK/apt-vsftpd.log)"
        fi
    fi
    # The package starts a daemon on port 21 where an init system runs; we never use it.
    mkdir -p /var/run/vsftpd/empty
    VSFTPD_BIN=$(command -v vsftpd || echo /usr/sbin/vsftpd)
    VSFTPD_VERSION=$(dpkg-query -W -f='${Version}' vsftpd)
}

# Pure-FTPd conflicts with vsftpd as a package: download the .deb and unpack it under the cache,
# together with any dependency that is not installed. Its binaries run from there.
ensure_pureftpd() {
    local dir="$CACHE/pure-ftpd" debs="$CACHE/debs"
    PUREFTPD_ROOT=$dir
    PUREFTPD_BIN=$dir/usr/sbin/pure-ftpd
    PUREPW_BIN=$dir/usr/bin/pure-pw
    if [[ ! -x $PUREFTPD_BIN || ! -x $PUREPW_BIN ]]; then
        log "fetching pure-ftpd (apt-get download + dpkg -x into $dir)"
        mkdir -p "$debs" "$dir"
        chmod 755 "$debs"   # apt's _apt user must be able to write here, or it warns
        ( cd "$debs" && { apt-get download pure-ftpd >"$WORK/apt-pureftpd.log" 2>&1 ||
            { apt-get update -q >>"$WORK/apt-pureftpd.log" 2>&1; apt-get download pure-ftpd >>"$WORK/apt-pureftpd.log" 2>&1; }; } ) ||
            die "apt-get download pure-ftpd failed (see $WORK/apt-pureftpd.log)"
        local deb
        deb=$(ls -t "$debs"/pure-ftpd_*.deb | head -1)
        dpkg -x "$deb" "$dir"
        # Dependencies that are not installed: fetch and unpack them beside it.
        local dep
        for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//' | tr -d ' '); do
            [[ -z $dep ]] && continue
            if ! dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'ok installed'; then
                log "  pure-ftpd dependency $dep is not installed: unpacking it beside pure-ftpd"
                ( cd "$debs" && apt-get download "$dep" >>"$WORK/apt-pureftpd.log" 2>&1 ) || log "  (could not download $dep)"
                local d
                for d in "$debs/${dep}"_*.deb; do [[ -f $d ]] && dpkg -x "$d" "$dir"; done
            fi
        done
    fi
    PUREFTPD_LD=""
    local libdirs
    libdirs=$(find "$dir" -name '*.so*' -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
    [[ -n $libdirs ]] && PUREFTPD_LD=${libdirs%:}
    if LD_LIBRARY_PATH=$PUREFTPD_LD ldd "$PUREFTPD_BIN" | grep -q 'not found'; then
        LD_LIBRARY_PATH=$PUREFTPD_LD ldd "$PUREFTPD_BIN" | grep 'not found' >&2
        die "pure-ftpd has missing libraries (above)"
    fi
    PUREFTPD_VERSION="$(dpkg-deb -f "$(ls -t "$debs"/pure-ftpd_*.deb 2>/dev/null | head -1)" Version 2>/dev/null) ($(LD_LIBRARY_PATH=$PUREFTPD_LD "$PUREFTPD_BIN" --help 2>&1 | head -1))"
}

# The benchmark user: a system account with a login shell (PAM's pam_shells wants one) and an empty
# root-owned home (vsftpd changes into the home before it goes to local_root).
# Its password is random per harness invocation and hashed with SHA-512-crypt at the minimum 1000
# rounds: cheap, and a hash all three servers verify (vsftpd via PAM/shadow, Pure-FTPd via crypt(3)
# in its puredb, ringest via its users file).
ensure_user() {
    if ! id "$BENCH_USER" >/dev/null 2>&1; then
        log "creating user $BENCH_USER"
        useradd -M -d /var/lib/$BENCH_USER -s /bin/sh -c "ringest benchmark" "$BENCH_USER"
    fi
    local home
    home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
    if [[ ! -d $home ]]; then
        [[ $home == /nonexistent || -z $home ]] && { home=/var/lib/$BENCH_USER; usermod -d "$home" "$BENCH_USER"; }
        mkdir -p "$home"
    fi
    BENCH_UID=$(id -u "$BENCH_USER")
    BENCH_GID=$(id -g "$BENCH_USER")
    BENCH_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | head -c 16)
    echo "$BENCH_USER:$BENCH_PASSWORD" | chpasswd -c SHA512 -s 1000
    BENCH_HASH=$(getent shadow "$BENCH_USER" | cut -d: -f2)
    [[ $BENCH_HASH == '$6$'* ]] || die "unexpected shadow hash for $BENCH_USER: ${BENCH_HASH:0:8}..."
    # vsftpd's PAM stack denies users listed in /etc/ftpusers.
    if grep -qx "$BENCH_USER" /etc/ftpusers 2>/dev/null; then die "$BENCH_USER is listed in /etc/ftpusers"; fi
}

# --- FTPS ---------------------------------------------------------------------------------------
# One self-signed P-256 certificate for all servers and clients, made once per invocation in
# $WORK/tls: TLS_CERT (certificate), TLS_KEY (its key), TLS_PEM (key + certificate in one file, the
# bundle Pure-FTPd's -2/--certfile takes). Clients trust TLS_CERT itself (loadgen --ca, curl --cacert).
make_tls_cert() {
    local dir="$WORK/tls"
    mkdir -p "$dir"
    chmod 700 "$dir"
    TLS_CERT=$dir/cert.pem
    TLS_KEY=$dir/key.pem
    TLS_PEM=$dir/pure-ftpd.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE \
        -keyout "$TLS_KEY" -out "$TLS_CERT" >"$dir/openssl.log" 2>&1 || die "openssl req failed (see $dir/openssl.log)"
    cat "$TLS_KEY" "$TLS_CERT" >"$TLS_PEM"
    chmod 600 "$TLS_KEY" "$TLS_PEM"
    chmod 644 "$TLS_CERT"
    # The clients read the certificate as root; the servers load it as root before dropping privileges.
    TLS_FINGERPRINT=$(openssl x509 -in "$TLS_CERT" -noout -fingerprint -sha256 | cut -d= -f2)
}

# The TLS flags of each server and client, in one place (adjust here when a flag changes).
# ringest: TLS required on control and data (data connections must resume the control session).
ringest_tls_args() { RINGEST_TLS_ARGS=(--tls required --tls-data required --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY"); }
# loadgen: explicit FTPS (AUTH TLS, then PBSZ 0 / PROT P), trusting our certificate.
loadgen_tls_args() { LOADGEN_TLS_ARGS=(--tls --ca "$TLS_CERT"); }
# Pure-FTPd: -Y 3 = TLS required on the control connection and the data connections; -2 the key+cert
# bundle; -J the same cipher list vsftpd gets (TLS 1.2 and below; TLS 1.3 suites are OpenSSL's default).
pureftpd_tls_args() { PUREFTPD_TLS_ARGS=(-Y 3 -2 "$TLS_PEM" -J HIGH); }
# vsftpd: configs/vsftpd-tls.conf.in appended to configs/vsftpd.conf.in (see start_vsftpd).

# --- system limits ------------------------------------------------------------------------------

raise_limits() {
    # As high as the hard limit allows (raising the hard limit needs CAP_SYS_RESOURCE, which a
    # container's root may lack); 10,000 idle sessions need a bit over 10,000 descriptors.
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    (( $(ulimit -n) >= 10300 )) || log "WARNING: RLIMIT_NOFILE $(ulimit -n) is too low for 10,000 idle sessions"
    ulimit -u unlimited 2>/dev/null || true
    # The forking servers need two processes per idle session: 10,000 sessions = 20,000 processes.
    local pid_max
    pid_max=$(cat /proc/sys/kernel/pid_max)
    if (( pid_max < 131072 )); then
        log "raising kernel.pid_max $pid_max -> 131072 (the forking servers use 2 processes per session)"
        echo 131072 >/proc/sys/kernel/pid_max || log "  (could not raise pid_max)"
    fi
}

# --- ports --------------------------------------------------------------------------------------

port_busy() { ss -Htan "( sport = :$1 )" 2>/dev/null | grep -q .; }

free_port() { # base -> first port >= base with no socket on it (never 2024)
    local p=$1
    while port_busy "$p" || (( p == 2024 )); do p=$((p + 1)); done
    echo "$p"
}

wait_listening() { # pid port timeout_s
    local pid=$1 port=$2 n=$(( $3 * 20 ))
    while (( n-- > 0 )); do
        kill -0 "$pid" 2>/dev/null || return 1
        ss -Hltn "( sport = :$port )" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# --- fresh root directories ---------------------------------------------------------------------
# ext4 without a journal pays ~0.5 ms per file created right after tens of thousands were deleted
# nearby (recently-deleted inode scan). Every run gets a new parent directory under $WORK, which has
# the ext4 "top directory" attribute (chattr +T) so the Orlov allocator spreads the parents over block
# groups like top-level directories. Inodes are kept until the whole benchmark ends: deleting a run's
# 20,000 files right after it made the next run (another server's) pay the scan for every create.

new_root() { # run_index -> prints the root path
    local parent="$WORK/roots/p$1"
    chmod 711 "$WORK"   # mktemp made it 700; the servers' user must traverse it
    mkdir -p "$parent/root"
    chmod 755 "$WORK/roots" "$parent"
    chown "$BENCH_USER:" "$parent/root"
    chmod 755 "$parent/root"
    echo "$parent/root"
}

# Called when a run is over. Keeps every file (see above) but truncates the large ones to zero, which
# frees their data without freeing an inode: otherwise the page cache of the 1 MiB and 2 GiB runs
# fills memory and the next runs pay for reclaim and writeback (all servers fell to ~600 files/s
# in scenario 3). The cleanup at exit removes $WORK and with it every root.
drop_root() { # root
    find "$1" -type f -size +64k -exec truncate -s 0 {} + 2>/dev/null
    sync
}

# --- servers ------------------------------------------------------------------------------------
# Each start_* takes (root, port, logfile) and sets SRV_PID. Every server listens on 127.0.0.1 only.
# Every server runs under `benchlib.py subreaper`, a child subreaper: a session process that its
# parent leaves behind (vsftpd's privilege-separated pairs do) is re-parented to the wrapper instead of
# init and reaped there, so its CPU time stays in the measured tree (wrapper cutime + live
# descendants). SRV_PID is the wrapper's PID; it forwards SIGTERM and exits after the server.

# Called as `reaped CMD... &`: the background subshell execs the wrapper, so $! is the wrapper.
reaped() { exec python3 "$BENCH/benchlib.py" subreaper -- "$@"; }

main_of() { # wrapper pid -> the server's own pid (the wrapper's first child)
    local c n=100
    while (( n-- > 0 )); do
        c=$(awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null)
        [[ -n $c ]] && { echo "$c"; return; }
        sleep 0.02
    done
    echo "$1"
}

start_ringest() {
    local root=$1 port=$2 logf=$3
    local args=(serve --listen "127.0.0.1:$port" --root "$root"
        --passive-ports "${PASV_LO[ringest]}-${PASV_HI[ringest]}"
        --max-sessions 20000 --max-sessions-per-ip 0 --shutdown-grace 2 "${RINGEST_EXTRA[@]}")
    if (( TLS )); then
        ringest_tls_args
        args+=("${RINGEST_TLS_ARGS[@]}")
    fi
    if [[ $AUTH == plain ]]; then
        args+=(--user "$BENCH_USER" --password "$BENCH_PASSWORD")
    else
        local users="$WORK/ringest-users.toml"
        install -m 600 /dev/null "$users"
        cat >"$users" <<EOF
[[user]]
name = "$BENCH_USER"
password = '$BENCH_HASH'
root = "$root"
EOF
        args+=(--users-file "$users")
    fi
    SRV_CMD="$RINGEST_BIN ${args[*]}"
    SRV_CMD=${SRV_CMD//$BENCH_PASSWORD/***}
    reaped "$RINGEST_BIN" "${args[@]}" >"$logf" 2>&1 </dev/null &
    SRV_PID=$!
}

# ringest with every upload through the page cache (its buffered splice path): the reference for
# what direct I/O changes.
start_ringest-buffered() {
    local RINGEST_EXTRA=(--direct-io off)
    start_ringest "$@"
}

# Another ringest build ($RINGEST_BASE_BIN, e.g. the commit before a change) run with the same
# settings, interleaved with the current one: before/after in one run, on the same machine state.
start_ringest-base() {
    local RINGEST_BIN=$WORK/bin/ringest-base
    start_ringest "$@"
}

start_vsftpd() {
    local root=$1 port=$2 logf=$3
    local conf="$WORK/vsftpd.conf"
    sed -e "s|@PORT@|$port|; s|@ROOT@|$root|; s|@PASV_LO@|${PASV_LO[vsftpd]}|; s|@PASV_HI@|${PASV_HI[vsftpd]}|" \
        -e "s|@ISOLATE@|${VSFTPD_ISOLATE:-NO}|" "$BENCH/configs/vsftpd.conf.in" >"$conf"
    if (( TLS )); then
        sed -e "s|@CERT@|$TLS_CERT|; s|@KEY@|$TLS_KEY|" "$BENCH/configs/vsftpd-tls.conf.in" >>"$conf"
    fi
    chmod 600 "$conf"
    SRV_CMD="$VSFTPD_BIN $conf"
    reaped "$VSFTPD_BIN" "$conf" >"$logf" 2>&1 </dev/null &
    SRV_PID=$!
}

start_pureftpd() {
    local root=$1 port=$2 logf=$3
    local passwd="$WORK/pureftpd.passwd" pdb="$WORK/pureftpd.pdb"
    # A puredb virtual user mapped to the benchmark user's uid/gid, home = the run's root ("/./"
    # would chroot there too; -A chroots everyone anyway). Same SHA-512-crypt hash as the others.
    install -m 600 /dev/null "$passwd"
    printf '%s:%s:%s:%s::%s/./::::::::::::\n' "$BENCH_USER" "$BENCH_HASH" "$BENCH_UID" "$BENCH_GID" "$root" >"$passwd"
    rm -f "$pdb"
    LD_LIBRARY_PATH=$PUREFTPD_LD "$PUREPW_BIN" mkdb "$pdb" -f "$passwd" >/dev/null || die "pure-pw mkdb failed"
    # -S bind, -c/-C max clients total/per IP, -p passive range, -E no anonymous, -A chroot everyone,
    # -H no reverse DNS, -l puredb auth, -f none: no syslog, -I idle minutes, foreground (no -B).
    local args=(-S "127.0.0.1,$port" -c 20000 -C 20000 -p "${PASV_LO[pureftpd]}:${PASV_HI[pureftpd]}"
        -E -A -H -f none -I 15 -l "puredb:$pdb")
    if (( TLS )); then
        pureftpd_tls_args
        args+=("${PUREFTPD_TLS_ARGS[@]}")
    fi
    SRV_CMD="$PUREFTPD_BIN ${args[*]}"
    LD_LIBRARY_PATH=$PUREFTPD_LD reaped "$PUREFTPD_BIN" "${args[@]}" >"$logf" 2>&1 </dev/null &
    SRV_PID=$!
}

# Stops a server we started: SIGTERM to it, SIGKILL after 10 s, then SIGKILL to any descendant of
# it that is still there (they were listed before the stop, so only our own processes are touched).
# Sets SRV_EXIT (the server's exit status, or "alive-before-stop"/"died:<status>").
stop_server() { # pid
    local pid=$1 n
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null; SRV_EXIT="died:$?"
        return
    fi
    python3 "$BENCH/benchlib.py" snapshot "$pid" >"$WORK/kids.snap"
    kill -TERM "$pid" 2>/dev/null
    n=200
    while kill -0 "$pid" 2>/dev/null && (( n-- > 0 )); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        log "  server $pid did not stop in 10 s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null; SRV_EXIT="stopped:$?"
    n=$(python3 "$BENCH/benchlib.py" killsnap "$WORK/kids.snap")
    (( n > 0 )) && log "  killed $n leftover processes of server $pid"
    return 0
}
