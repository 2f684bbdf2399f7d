#!/bin/sh
# ab-balancer.sh - two balancer binaries against the same storageds, in
# alternating rounds, for before/after comparisons on a busy machine.
#
# Starts three storageds (three failure domains), balancer A and balancer B
# (same config, replicas 2) and stores a 4 KiB and a 64 MiB object. Then,
# ROUNDS times: GET 4 KiB (wrk, 32 conns) through A, through B, directly;
# then ROUNDS times GET 64 MiB (wrk, 4 conns) the same way. Each figure is
# the median of its rounds; since A, B and direct alternate, load from
# other work on the machine falls on all three alike. Usage:
#   bench/ab-balancer.sh BALANCERD_A BALANCERD_B [BUILD_DIR] [SECONDS] [ROUNDS]
# (storaged from BUILD_DIR, default build-bench).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
bal_a=$1 bal_b=$2
build=${3:-${CAS_BUILD:-$here/build-bench}}
secs=${4:-5}
rounds=${5:-5}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
storaged=$build/storaged/ca-cas-storaged
for tool in "$storaged" "$bal_a" "$bal_b"; do
    [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "bench: wrk not installed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cas-ab-XXXXXX")
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { i=0; until curl -fs "$1/healthz" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { echo "bench: $1 not up" >&2; exit 1; }; sleep 0.1; done; }

ports=""
{ echo "replicas: 2"; echo "backends:"; } >"$tmp/b.yaml"
for n in 1 2 3; do
    p=$(freeport)
    ports="$ports $p"
    "$storaged" --dir "$tmp/s$n" --listen "127.0.0.1:$p" --log-level warn --scrub-rate 0 \
        >"$tmp/s$n.log" 2>&1 &
    pids="$pids $!"
    printf '  - url: http://127.0.0.1:%s\n    failure_domain: d%s\n' "$p" "$n" >>"$tmp/b.yaml"
done
pa=$(freeport)
"$bal_a" --config "$tmp/b.yaml" --listen "127.0.0.1:$pa" --log-level warn >"$tmp/a.log" 2>&1 &
pids="$pids $!"
pb=$(freeport)
"$bal_b" --config "$tmp/b.yaml" --listen "127.0.0.1:$pb" --log-level warn >"$tmp/b.log" 2>&1 &
pids="$pids $!"
direct=http://127.0.0.1:$(echo $ports | cut -d' ' -f1)
for p in $ports; do wait_up "http://127.0.0.1:$p"; done
wait_up "http://127.0.0.1:$pa"
wait_up "http://127.0.0.1:$pb"
sleep 1
mkobj() { head -c "$2" /dev/urandom >"$tmp/$1"; sha1sum "$tmp/$1" | cut -c1-40; }
k4=$(mkobj o4k 4096)
k64=$(mkobj o64m $((64 << 20)))
for k in "$k4:o4k" "$k64:o64m"; do
    key=${k%%:*} file=${k#*:}
    curl -fs -o /dev/null -T "$tmp/$file" "http://127.0.0.1:$pa/objects/$key"
    curl -fs -o /dev/null -T "$tmp/$file" "$direct/objects/$key"
done
wrk_run() { wrk -t2 -c"$2" -d"${secs}s" "$1" 2>&1; }
reqs() { echo "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
mbps() {
    echo "$1" | awk '/Transfer\/sec/ {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v);
        m = u=="GB" ? 1073.741824 : u=="MB" ? 1.048576 : u=="KB" ? 0.001024 : 0.000001;
        printf "%.0f", v*m}'
}
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
a4="" b4="" d4="" a64="" b64="" d64=""
for _ in $(seq "$rounds"); do
    a4="$a4 $(reqs "$(wrk_run "http://127.0.0.1:$pa/objects/$k4" 32)")"
    b4="$b4 $(reqs "$(wrk_run "http://127.0.0.1:$pb/objects/$k4" 32)")"
    d4="$d4 $(reqs "$(wrk_run "$direct/objects/$k4" 32)")"
done
for _ in $(seq "$rounds"); do
    a64="$a64 $(mbps "$(wrk_run "http://127.0.0.1:$pa/objects/$k64" 4)")"
    b64="$b64 $(mbps "$(wrk_run "http://127.0.0.1:$pb/objects/$k64" 4)")"
    d64="$d64 $(mbps "$(wrk_run "$direct/objects/$k64" 4)")"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a/b : 0}'; }
ma4=$(median $a4) mb4=$(median $b4) md4=$(median $d4)
ma64=$(median $a64) mb64=$(median $b64) md64=$(median $d64)
cat <<TABLE
| measurement (median of $rounds alternating rounds of ${secs}s) | balancer A | balancer B | direct | A/direct | B/direct | B/A |
|---|---|---|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns) | $ma4 | $mb4 | $md4 | $(ratio $ma4 $md4) | $(ratio $mb4 $md4) | $(ratio $mb4 $ma4) |
| GET 64 MiB, MB/s (wrk, 4 conns) | $ma64 | $mb64 | $md64 | $(ratio $ma64 $md64) | $(ratio $mb64 $md64) | $(ratio $mb64 $ma64) |

rounds, GET 4 KiB A:$a4 / B:$b4 / direct:$d4; GET 64 MiB A:$a64 / B:$b64 / direct:$d64
TABLE
