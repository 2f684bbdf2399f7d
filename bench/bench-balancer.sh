#!/bin/sh
# bench-balancer.sh - the balancer against a storaged directly, in one run.
#
# Starts three storageds (three failure domains) and a balancer with
# replicas 2 on loopback, under a temporary folder, then measures, through
# the balancer and directly against the first storaged:
#   GET 4 KiB requests/s (wrk), GET 64 MiB MB/s (wrk), PUT 1 MiB MB/s
#   (ca-cas bench, a new object per request), and the p50/p99 latency of
#   1 MiB GETs at half the peak rate (latency.py, open loop).
# Prints a Markdown table for bench/RESULTS.md. Usage:
#   bench/bench-balancer.sh [BUILD_DIR] [SECONDS]
# BUILD_DIR defaults to $CAS_BUILD, then build-bench (private to the
# benchmarks, as in lib.sh: never the shared build/, which other test runs
# rebuild under our feet).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${CAS_BUILD:-$here/build-bench}}
secs=${2:-10}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
storaged=$build/storaged/ca-cas-storaged
balancerd=$build/balancerd/ca-cas-balancerd
cli=$build/ca-cas/ca-cas
for tool in "$storaged" "$balancerd" "$cli"; do
    [ -x "$tool" ] || { echo "bench: $tool not built" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "bench: wrk not installed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cas-bench-XXXXXX")
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
{ echo "replicas: 2"; echo "backends:"; } >"$tmp/balancer.yaml"
for n in 1 2 3; do
    p=$(freeport)
    ports="$ports $p"
    # No background scrub: on a store this small it rescans without pause
    # (about half a core per storaged), noise that is not what is measured.
    "$storaged" --dir "$tmp/s$n" --listen "127.0.0.1:$p" --log-level warn --scrub-rate 0 \
        >"$tmp/s$n.log" 2>&1 &
    pids="$pids $!"
    printf '  - url: http://127.0.0.1:%s\n    failure_domain: d%s\n' "$p" "$n" >>"$tmp/balancer.yaml"
done
bp=$(freeport)
"$balancerd" --config "$tmp/balancer.yaml" --listen "127.0.0.1:$bp" --log-level warn \
    --spool-dir "$tmp" >"$tmp/balancerd.log" 2>&1 &
pids="$pids $!"
direct=http://127.0.0.1:$(echo $ports | cut -d' ' -f1)
bal=http://127.0.0.1:$bp
for p in $ports; do wait_up "http://127.0.0.1:$p"; done
wait_up "$bal"
sleep 1 # first probes

# Objects: stored through the balancer, and directly on the first storaged
# so that the direct runs find them there.
mkobj() { head -c "$2" /dev/urandom >"$tmp/$1"; sha1sum "$tmp/$1" | cut -c1-40; }
k4=$(mkobj o4k 4096)
k64=$(mkobj o64m $((64 << 20)))
k1=$(mkobj o1m $((1 << 20)))
for k in "$k4:o4k" "$k64:o64m" "$k1:o1m"; do
    key=${k%%:*} file=${k#*:}
    curl -fs -o /dev/null -T "$tmp/$file" "$bal/objects/$key"
    curl -fs -o /dev/null -T "$tmp/$file" "$direct/objects/$key"
done

# wrk_field URL CONNS FIELD: Requests/sec or Transfer/sec (in MB/s).
wrk_run() { wrk -t2 -c"$2" -d"${secs}s" "$1" 2>&1; }
reqs() { echo "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
mbps() {
    echo "$1" | awk '/Transfer\/sec/ {v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v);
        m = u=="GB" ? 1073.741824 : u=="MB" ? 1.048576 : u=="KB" ? 0.001024 : 0.000001;
        printf "%.0f", v*m}'
}

echo "running (${secs}s per measurement)..." >&2
# GET 4 KiB is the figure most sensitive to whatever else runs on the
# machine: alternate balancer and direct for a few rounds and take the
# median of each (the rounds are printed too).
rounds=${CAS_BENCH_ROUNDS:-3}
g4_rounds="" g4_bals="" g4_dirs=""
for _ in $(seq "$rounds"); do
    b=$(reqs "$(wrk_run "$bal/objects/$k4" 32)")
    d=$(reqs "$(wrk_run "$direct/objects/$k4" 32)")
    g4_bals="$g4_bals $b" g4_dirs="$g4_dirs $d"
    g4_rounds="$g4_rounds${g4_rounds:+, }$b/$d"
done
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
g4_bal=$(median $g4_bals)
g4_dir=$(median $g4_dirs)
g64_bal=$(mbps "$(wrk_run "$bal/objects/$k64" 4)")
g64_dir=$(mbps "$(wrk_run "$direct/objects/$k64" 4)")
p1_bal_out=$("$cli" --server "$bal" bench --concurrency 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)
p1_dir_out=$("$cli" --server "$direct" bench --concurrency 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)
peak_bal=$(reqs "$(wrk_run "$bal/objects/$k1" 16)")
peak_dir=$(reqs "$(wrk_run "$direct/objects/$k1" 16)")
lat_bal=$(python3 "$here/bench/latency.py" "$bal/objects/$k1" "$((peak_bal / 2))" "$secs")
lat_dir=$(python3 "$here/bench/latency.py" "$direct/objects/$k1" "$((peak_dir / 2))" "$secs")

ratio=$(awk -v a="$g4_bal" -v b="$g4_dir" 'BEGIN {printf "%.2f", b ? a/b : 0}')
cat <<TABLE
| measurement | through balancer (replicas 2) | storaged directly | ratio |
|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns; median of $rounds alternating rounds) | $g4_bal | $g4_dir | $ratio |
| GET 64 MiB, MB/s (wrk, 4 conns) | $g64_bal | $g64_dir | $(awk -v a="$g64_bal" -v b="$g64_dir" 'BEGIN {printf "%.2f", b ? a/b : 0}') |
| GET 1 MiB peak, requests/s (wrk, 16 conns) | $peak_bal | $peak_dir | $(awk -v a="$peak_bal" -v b="$peak_dir" 'BEGIN {printf "%.2f", b ? a/b : 0}') |
| GET 1 MiB at half peak: latency | $lat_bal | $lat_dir | |

GET 4 KiB rounds (balancer/direct requests/s): $g4_rounds

PUT 1 MiB (ca-cas bench, 8 in flight, a new object each), through the balancer:
\`\`\`
$p1_bal_out
\`\`\`
directly:
\`\`\`
$p1_dir_out
\`\`\`
TABLE
