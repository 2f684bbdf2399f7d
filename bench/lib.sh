# lib.sh - shared helpers for the benchmark scripts in bench/ (sourced, not run).
#
# Each script: bench_init NAME (temp dir, EXIT trap that kills only the PIDs
# this script started and removes its temp dir), bench_build, then
# start_storaged / start_nginx, measure, and results_section NAME FILE to put
# its section into bench/RESULTS.md (replacing an earlier one of that name).
# Environment: CAS_BENCH_TMP (where data dirs go; default /var/tmp, the disk
# under test), CAS_BUILD (build dir; default ROOT/build-bench, private to the
# benchmarks so that nobody's rebuild of ROOT/build swaps binaries mid-run).

set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD=${CAS_BUILD:-$ROOT/build-bench}
RESULTS=${CAS_BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}
STORAGED=$BUILD/storaged/ca-cas-storaged
BENCH_PIDS=()
BENCH_TMP=
BENCH_NAME=
BENCH_CMD=

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    [ -n "$BENCH_TMP" ] && rm -rf "$BENCH_TMP"
    BENCH_TMP=
}

# bench_init NAME "$@": temp dir and cleanup trap; remembers the command line.
bench_init() {
    BENCH_NAME=$1
    shift
    BENCH_CMD="bench/$BENCH_NAME.sh${*:+ $*}"
    BENCH_LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
    BENCH_TMP=$(mktemp -d -p "${CAS_BENCH_TMP:-/var/tmp}" "cas-bench-$BENCH_NAME.XXXXXX")
    chmod 755 "$BENCH_TMP"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_rev() { # the revision being built, flagged when common/ or storaged/ differ from it
    local rev
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain -- common storaged 2>/dev/null)" ]; then
        rev="$rev + uncommitted changes in common/ or storaged/"
    fi
    echo "$rev"
}

bench_build() {
    if [ -z "${CAS_BENCH_NO_BUILD:-}" ]; then
        CAS_BENCH_REV=$(bench_rev)
        cmake -S "$ROOT" -B "$BUILD" -DCAS_BENCH=ON -DCAS_ASSERTS=ON >/dev/null
        cmake --build "$BUILD" -j2 --target ca-cas-storaged cas-bench-putload \
            cas-bench-fsyncloop cas-bench-replay >/dev/null
    fi
}

make_pki() { # DIR: a CA (ca.pem) and a certificate for 127.0.0.1 (srv.pem, srv.key) in DIR
    mkdir -p "$1"
    (
        cd "$1"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
            -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key \
            -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
        echo "subjectAltName=IP:127.0.0.1" >ext
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
            -days 2 -extfile ext 2>/dev/null
        chmod 600 srv.key ca.key
    )
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # URL [any]: waits for a 2xx (or, with "any", any HTTP answer)
    local code
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
        [[ $code == 2* || ( ${2:-} == any && $code != 000 ) ]] && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# start_storaged DIR PORT [extra options]
start_storaged() {
    local dir=$1 port=$2
    shift 2
    "$STORAGED" --dir "$dir" --listen "127.0.0.1:$port" --log-level warn "$@" \
        2>>"$BENCH_TMP/storaged.log" &
    STORAGED_PID=$!
    BENCH_PIDS+=("$STORAGED_PID")
    wait_http "http://127.0.0.1:$port/healthz"
}

stop_pid() { # PID: stops one process this script started
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# start_nginx ROOTDIR PORT WORKERS: serves ROOTDIR/objects/<key> as static files.
start_nginx() {
    local www=$1 port=$2 workers=$3
    local conf=$BENCH_TMP/nginx-$port
    mkdir -p "$conf/tmp"
    cat >"$conf/nginx.conf" <<NGINX
user root;
daemon off;
master_process on;
worker_processes $workers;
pid $conf/nginx.pid;
error_log $conf/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    types { }
    client_body_temp_path $conf/tmp/body;
    proxy_temp_path $conf/tmp/proxy;
    fastcgi_temp_path $conf/tmp/fastcgi;
    uwsgi_temp_path $conf/tmp/uwsgi;
    scgi_temp_path $conf/tmp/scgi;
    server {
        listen 127.0.0.1:$port reuseport;
        root $www;
        location /objects/ { }
    }
}
NGINX
    nginx -c "$conf/nginx.conf" -p "$conf" -e "$conf/error.log" &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$port/" any
}

# wrk_lua KEYFILE OUT: a wrk script cycling over the keys (each thread from
# its own offset) that prints "requests= bytes= seconds= errors=" when done.
wrk_lua() {
    cat >"$2" <<LUA
local keys = {}
for line in io.lines("$1") do keys[#keys + 1] = "/objects/" .. line end
local n = 0
local tid = 0
setup = function(thread) thread:set("tid", tid); tid = tid + 1 end
init = function(args) n = (tid * 7919) % #keys end
request = function()
    n = n % #keys + 1
    return wrk.format("GET", keys[n])
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("WRK requests=%d bytes=%d seconds=%.3f errors=%d p50_ms=%.3f p99_ms=%.3f\n",
        summary.requests, summary.bytes, summary.duration / 1e6,
        e.connect + e.read + e.write + e.status + e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
}

# run_wrk URL LUA THREADS CONNS SECONDS: prints the WRK line; fails on errors.
run_wrk() {
    local out
    out=$(wrk -t"$3" -c"$4" -d"$5"s --timeout 30s -s "$2" "$1" 2>&1) || { echo "$out" >&2; return 1; }
    local line
    line=$(grep '^WRK ' <<<"$out")
    if grep -q 'errors=[1-9]' <<<"$line" || grep -q 'Non-2xx' <<<"$out"; then
        echo "wrk reported errors against $1:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$line"
}

field() { # LINE NAME: value of NAME=... in LINE
    sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"
}

calc() { python3 -c "print($*)"; }

fs_of() { # DIR: file system type, device and mount options
    local src fstype opts target
    read -r src fstype opts target < <(findmnt -n -o SOURCE,FSTYPE,OPTIONS,TARGET -T "$1")
    echo "$fstype on $src (mounted at $target, $opts)"
}

# machine_info DATADIR: markdown lines describing the machine and the build.
machine_info() {
    local model cores mem kernel rev
    model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    cores=$(nproc)
    mem=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')
    kernel=$(uname -sr)
    rev=${CAS_BENCH_REV:-unknown}
    echo "- machine: $model, $cores cores, $mem RAM, $kernel"
    echo "- data dir file system: $(fs_of "$1")"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); built from: $rev, $(t=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt"); echo "${t:-RelWithDebInfo}")"
    echo "- load average (1/5/15 min) at start: $BENCH_LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg) (anything above ~2 means other work shared the 2 cores: figures are noisier, the ratios less so since the servers alternate)"
    echo "- command: \`$BENCH_CMD\` (from the repository root)"
}

# results_section FILE: replaces (or appends) this script's section of
# RESULTS.md with FILE's contents, between markers.
results_section() {
    python3 - "$RESULTS" "$BENCH_NAME" "$1" <<'PY'
import os, sys
path, name, src = sys.argv[1:]
body = open(src).read().rstrip("\n") + "\n"
begin, end = f"<!-- begin {name} -->\n", f"<!-- end {name} -->\n"
text = open(path).read() if os.path.exists(path) else ""
if not text:
    text = "# ca-cas benchmark results\n\nWritten by the scripts in bench/ (bench/run-all.sh rewrites the whole file;\neach script refreshes its own section). Every figure is a ratio against a\nreference measured in the same run, on the same machine.\n\n"
if begin in text and end in text:
    a = text.index(begin); b = text.index(end) + len(end)
    text = text[:a] + begin + body + end + text[b:]
else:
    text = text.rstrip("\n") + "\n\n" + begin + body + end
open(path, "w").write(text)
PY
}
