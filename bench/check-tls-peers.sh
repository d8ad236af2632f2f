#!/usr/bin/env bash
# Checks the FTPS set-up of bench/run.sh --tls with real clients (curl, openssl s_client, Python's
# ftplib), independent of loadgen: starts each server exactly as the harness does with TLS on
# (lib.sh's start_* with TLS=1 and the same kind of certificate), then for each one
#   1. openssl s_client -starttls ftp: the TLS version and cipher of the control connection (and with
#      -tls1_2)
#   2. curl --ssl-reqd (AUTH TLS, PBSZ 0, PROT P) uploads a 1 MiB file 5 times; the bytes on disk are
#      compared (steps 2-4 with TLS 1.3, then again with curl --tls-max 1.2)
#   3. curl --ssl-reqd downloads it again; compared
#   4. curl -v: the versions/ciphers curl reports and whether its data connections resumed the session
#   5. a plain (no TLS) login: must be refused
#   6. ftplib FTP_TLS + prot_p() with a fresh TLS session on the data connection (ftplib's default,
#      no resumption), and offering the control connection's session on it (TLS 1.3, then 1.2)
#   7. ftplib FTP_TLS with PROT C (clear data after a TLS login): must be refused
# and stops it. Prints what each step saw; exits non-zero if a required step failed (TLS 1.2
# uploads, downloads, refusals; TLS 1.3 uploads only warn when some of them fail, see README).
#
#   sudo bench/check-tls-peers.sh [--servers vsftpd,pureftpd[,ringest]]
#
# ringest is off by default (its --tls flags are new); with it, RINGEST_BIN=/path/to/ringest.
set -uo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=$BENCH/.cache
SERVERS=vsftpd,pureftpd
while (( $# )); do
    case $1 in
        --servers) SERVERS=$2; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
(( EUID == 0 )) || { echo "run as root (like bench/run.sh)" >&2; exit 2; }
for t in curl openssl python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 2; }; done

mkdir -p "$CACHE"
WORK=$(mktemp -d /tmp/ringest-tlscheck.XXXXXX)
mkdir -p "$WORK/roots"
AUTH=hash
TLS=1
RINGEST_EXTRA=()
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

SRV_PID=""
cleanup() {
    [[ -n $SRV_PID ]] && kill -0 "$SRV_PID" 2>/dev/null && stop_server "$SRV_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

IFS=',' read -r -a SRVS <<<"$SERVERS"
for s in "${SRVS[@]}"; do
    case $s in
        vsftpd) ensure_vsftpd ;;
        pureftpd) ensure_pureftpd ;;
        ringest) [[ -x ${RINGEST_BIN:-} ]] || { echo "--servers ringest needs RINGEST_BIN=/path/to/ringest" >&2; exit 2; } ;;
        *) echo "unknown server $s" >&2; exit 2 ;;
    esac
done
ensure_user
make_tls_cert
echo "certificate: $(openssl x509 -in "$TLS_CERT" -noout -subject -ext subjectAltName 2>/dev/null | tr -s ' \n' ' ')"
echo "             $(openssl x509 -in "$TLS_CERT" -noout -text | grep -m1 'Public Key Algorithm' | sed 's/^ *//'), $(openssl x509 -in "$TLS_CERT" -noout -text | grep -m1 'NIST CURVE' | sed 's/^ *//')"
echo "clients: $(curl --version | head -1 | cut -d' ' -f1-5); $(openssl version); Python $(python3 -c 'import ssl,sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"
[[ " ${SRVS[*]} " == *" vsftpd "* ]] && echo "vsftpd $VSFTPD_VERSION"
[[ " ${SRVS[*]} " == *" pureftpd "* ]] && echo "pure-ftpd $PUREFTPD_VERSION"

head -c $((1024 * 1024)) /dev/urandom >"$WORK/up.bin"
UP_SUM=$(sha256sum <"$WORK/up.bin" | cut -d' ' -f1)
FAILS=0
fail() { echo "  FAIL: $*"; FAILS=$((FAILS + 1)); }

# ftplib over FTPS: upload with prot_p(); reuse=1 wraps the data socket offering the control
# connection's TLS session (what curl does), reuse=0 with a fresh one (ftplib's default).
# prot=C: log in over TLS but ask for clear data (must be refused where data protection is required).
# maxv: 1.3 (whatever both sides support) or 1.2 (the client offers at most TLS 1.2).
ftplib_check() { # port name reuse prot maxv
    FTP_PASS=$BENCH_PASSWORD python3 - "$1" "$2" "$3" "$4" "$5" "$TLS_CERT" "$BENCH_USER" "$WORK/up.bin" <<'PY'
import ftplib, os, ssl, sys
port, name, reuse, prot, maxv, ca, user, path = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)
if maxv == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2


class ReuseFTP_TLS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            sess = self.sock.session if reuse == "1" else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=sess)
            print(f"    data TLS {conn.version()} {conn.cipher()[0]}, offered the control session: "
                  f"{sess is not None}, session_reused={conn.session_reused}")
        return conn, size


f = ReuseFTP_TLS(context=ctx, timeout=20)
try:
    f.connect("127.0.0.1", int(port))
    f.auth()
    print(f"    control TLS {f.sock.version()} {f.sock.cipher()[0]}")
    f.login(user, os.environ["FTP_PASS"])
    if prot == "P":
        f.prot_p()
    else:
        f.prot_c()
    with open(path, "rb") as fh:
        r = f.storbinary(f"STOR {name}", fh).replace("\n", " | ")
    print(f"    STOR -> {r}")
    print("    RESULT ok")
except Exception as e:  # noqa: BLE001
    print(f"    RESULT refused/failed: {type(e).__name__}: {e}")
    try:  # what the server said on the control connection
        f.sock.settimeout(3)
        print(f"    control reply: {f.getresp()}")
    except Exception as e2:  # noqa: BLE001
        print(f"    control reply: ({type(e2).__name__}: {e2})")
finally:
    try:
        f.close()
    except Exception:  # noqa: BLE001
        pass
PY
}

# N separate curl uploads (one control + one data connection each), TLS at most maxv; prints how many
# reached the disk intact and sets CURL_OK.
curl_uploads() { # n maxv
    local n=$1 v=$2 i ok=0 errs="" e
    for ((i = 1; i <= n; i++)); do
        rm -f "$root/c$v-$i.bin"
        e=$(curl -sS --ssl-reqd --tls-max "$v" --cacert "$TLS_CERT" --user "$cred" -T "$WORK/up.bin" "$url/c$v-$i.bin" 2>&1)
        if [[ -f $root/c$v-$i.bin ]] && [[ $(sha256sum <"$root/c$v-$i.bin" | cut -d' ' -f1) == "$UP_SUM" ]]; then
            ok=$((ok + 1))
        else
            errs+=" [#$i: ${e:-no error} ($(stat -c %s "$root/c$v-$i.bin" 2>/dev/null || echo 0) bytes on disk)]"
        fi
    done
    echo "  TLS <= $v: $ok/$n uploads on disk with the right sha256${errs}"
    CURL_OK=$ok
}

RUN=0
for srv in "${SRVS[@]}"; do
    RUN=$((RUN + 1))
    echo
    echo "=== $srv ==="
    root=$(new_root "$RUN")
    port=$(free_port "${PORT_BASE[$srv]}")
    logf="$WORK/$srv.log"
    "start_$srv" "$root" "$port" "$logf"
    echo "command: $SRV_CMD"
    if [[ $srv == vsftpd ]]; then echo "config (TLS part):"; sed -n '/^# --- FTPS/,$p' "$WORK/vsftpd.conf" | grep -v '^#' | sed 's/^/  /'; fi
    if ! wait_listening "$SRV_PID" "$port" 15; then
        fail "$srv did not start listening on $port"; cat "$logf"
        stop_server "$SRV_PID"; SRV_PID=""
        continue
    fi
    url="ftp://127.0.0.1:$port"
    cred="$BENCH_USER:$BENCH_PASSWORD"

    echo "-- 1. openssl s_client -starttls ftp -connect 127.0.0.1:$port -CAfile CERT -brief"
    timeout 20 openssl s_client -starttls ftp -connect "127.0.0.1:$port" -CAfile "$TLS_CERT" -verify_return_error \
        -brief </dev/null 2>&1 | grep -E 'Protocol version|Ciphersuite|Peer certificate|Verification|Server Temp Key|error' | sed 's/^/  /'
    timeout 20 openssl s_client -starttls ftp -connect "127.0.0.1:$port" -CAfile "$TLS_CERT" -tls1_2 \
        -brief </dev/null 2>&1 | grep -E 'Protocol version|Ciphersuite|error' | sed 's/^/  -tls1_2: /'

    for v in 1.3 1.2; do
        echo "-- 2. curl --ssl-reqd --tls-max $v --cacert CERT -T up.bin (1 MiB) $url/...: 5 uploads, bytes on disk checked"
        curl_uploads 5 "$v"
        if [[ $v == 1.2 ]]; then
            (( CURL_OK == 5 )) || fail "TLS 1.2 uploads: $CURL_OK/5"
        else
            (( CURL_OK > 0 )) || fail "TLS 1.3 uploads: none"
            (( CURL_OK == 5 )) || echo "  WARN: TLS 1.3 uploads $CURL_OK/5 (see bench/README.md, FTPS: curl can close the data connection before reading the server's TLS 1.3 session ticket; the RST then discards the upload's tail)"
        fi
        echo "-- 3. curl --ssl-reqd --tls-max $v --cacert CERT -o down.bin $url/<an uploaded file>"
        rm -f "$WORK/down.bin"
        src=$(ls "$root"/c*.bin 2>/dev/null | while read -r p; do [[ $(stat -c %s "$p") == 1048576 ]] && { echo "$p"; break; }; done)
        if [[ -z $src ]]; then src=$root/seed.bin; cp "$WORK/up.bin" "$src"; chown "$BENCH_USER:" "$src"; fi
        curl -sS --ssl-reqd --tls-max "$v" --cacert "$TLS_CERT" --user "$cred" -o "$WORK/down.bin" "$url/$(basename "$src")" 2>&1 | sed 's/^/  /'
        if [[ -f $WORK/down.bin ]] && [[ $(sha256sum <"$WORK/down.bin" | cut -d' ' -f1) == "$UP_SUM" ]]; then
            echo "  downloaded $(basename "$src"): $(stat -c %s "$WORK/down.bin") bytes, sha256 matches"
        else
            fail "TLS <= $v download missing or different"
        fi
        echo "-- 4. curl -v --ssl-reqd --tls-max $v: two uploads on one control connection (TLS version, cipher, session reuse)"
        rm -f "$root/v1.bin" "$root/v2.bin"
        curl -v --ssl-reqd --tls-max "$v" --cacert "$TLS_CERT" --user "$cred" -T "$WORK/up.bin" "$url/v1.bin" -T "$WORK/up.bin" "$url/v2.bin" 2>&1 |
            grep -E 'SSL connection using|re-using session|Newsession Ticket|CERT verify|^> (AUTH|PROT|STOR)|^< (234|226 |426|5[0-9][0-9])' |
            sed 's/^/  /'
        for f in v1.bin v2.bin; do
            if [[ $(sha256sum <"$root/$f" 2>/dev/null | cut -d' ' -f1) == "$UP_SUM" ]]; then echo "  $f on disk, sha256 matches"; else echo "  $f missing or different ($(stat -c %s "$root/$f" 2>/dev/null || echo 0) bytes)"; fi
        done
    done

    echo "-- 5. a plain login (no TLS): must be refused"
    out=$(curl -sS --connect-timeout 10 -m 20 --user "$cred" "$url/" 2>&1); rc=$?
    echo "  curl (no --ssl) rc $rc: $(echo "$out" | head -2 | tr '\n' ' ')"
    (( rc != 0 )) || fail "plain login was accepted"
    python3 - "$port" <<'PY' | sed 's/^/  /'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb")
def reply():
    lines = [f.readline().decode("latin-1").rstrip()]
    while len(lines[-1]) > 3 and lines[-1][3] == "-":
        lines.append(f.readline().decode("latin-1").rstrip())
    return " | ".join(lines)
try:
    print("raw: greeting " + reply())
    s.sendall(b"USER ftpbench\r\n")
    print("raw: USER ftpbench -> " + (reply() or "(connection closed)"))
except Exception as e:  # noqa: BLE001
    print(f"raw: {type(e).__name__}: {e}")
PY

    for v in 1.3 1.2; do
        echo "-- 6a. ftplib FTP_TLS + prot_p(), TLS <= $v, data connection WITHOUT session resumption (ftplib's default)"
        ftplib_check "$port" "py-noreuse-$v.bin" 0 P "$v"
        echo "-- 6b. ftplib FTP_TLS + prot_p(), TLS <= $v, data connection offering the control connection's session"
        ftplib_check "$port" "py-reuse-$v.bin" 1 P "$v"
        for f in "py-noreuse-$v.bin" "py-reuse-$v.bin"; do
            if [[ -f $root/$f ]]; then echo "  $f on disk: $(stat -c %s "$root/$f") bytes"; else echo "  $f not on disk"; fi
        done
    done

    echo "-- 7. ftplib FTP_TLS login, then PROT C (clear data): must be refused"
    out=$(ftplib_check "$port" py-clear.bin 0 C 1.3); echo "$out"
    [[ $out == *"RESULT ok"* ]] && fail "clear data connection accepted"

    stop_server "$SRV_PID"; SRV_PID=""
    if [[ -s $logf ]]; then echo "-- server log (last lines)"; tail -5 "$logf" | sed 's/^/  /'; fi
done
echo
(( FAILS == 0 )) && echo "all required checks passed" || echo "$FAILS required checks FAILED"
exit $(( FAILS > 0 ))
