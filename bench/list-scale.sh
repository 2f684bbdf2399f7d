#!/usr/bin/env bash
# list-scale.sh - how a storaged's GET /objects time grows with its object
# count: builds one disk store of N objects of 32 bytes (the first build's
# cas-bench-replay: configure it with -DCAS_BENCH=ON), then, ROUNDS times
# (default 3), starts each BUILD's storaged on it in turn and times one
# whole listing read with curl. Extra storaged options for every build go in
# STORAGED_ARGS (e.g. "--list-page-keys 1048576"). Prints one line per run:
# seconds, lines, and the storaged's peak RSS (VmHWM, KiB).
#
#   bench/list-scale.sh N BUILD [BUILD...]
# Data under $CAS_BENCH_TMP (default /var/tmp); stops only what it started.
set -euo pipefail
N=$1
shift
ROUNDS=${ROUNDS:-3}
D=$(mktemp -d -p "${CAS_BENCH_TMP:-/var/tmp}" cas-bench-list-scale.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
start() { # BUILD [ARGS...]
    local b=$1
    shift
    "$b/storaged/ca-cas-storaged" --dir "$D/s" --listen "127.0.0.1:$PORT" --scrub-rate 0 \
        --log-level warn "$@" &
    PID=$!
    for _ in $(seq 200); do curl -s -o /dev/null "$URL/healthz" && return 0; sleep 0.1; done
    echo "storaged did not come up" >&2
    exit 2
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }
# The first start writes the node file; then the objects go in through the
# engine (no HTTP, no fsync).
start "$1"
stop
"${REPLAY:-$1/bench/cas-bench-replay}" build "$D/s" "$N" 32
for r in $(seq "$ROUNDS"); do
    for b in "$@"; do
        # shellcheck disable=SC2086
        start "$b" ${STORAGED_ARGS:-}
        t0=$(date +%s.%N)
        n=$(curl -s "$URL/objects" | wc -l)
        t1=$(date +%s.%N)
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
        echo "objects=$N round=$r build=$b lines=$n seconds=$(python3 -c "print(round($t1 - $t0, 3))") hwm_kib=$hwm"
        stop
    done
done
