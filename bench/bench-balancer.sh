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
. "$here/bench/cluster.sh"
secs=${2:-10}
cluster_init bench "${1:-${CAS_BUILD:-$here/build-bench}}"
[ -x "$cli" ] || { echo "bench: $cli not built" >&2; exit 2; }
command -v wrk >/dev/null || { echo "bench: wrk not installed" >&2; exit 2; }

cluster_storageds
cluster_balancer "$balancerd"
sleep 1 # first probes

# Objects: stored through the balancer, and directly on the first storaged
# so that the direct runs find them there.
k4=$(mkobj o4k 4096)
k64=$(mkobj o64m $((64 << 20)))
k1=$(mkobj o1m $((1 << 20)))
for k in "$k4:o4k" "$k64:o64m" "$k1:o1m"; do
    key=${k%%:*} file=${k#*:}
    curl -fs -o /dev/null -T "$tmp/$file" "$bal/objects/$key"
    curl -fs -o /dev/null -T "$tmp/$file" "$direct/objects/$key"
done

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

g4_ratio=$(ratio "$g4_bal" "$g4_dir")
cat <<TABLE
| measurement | through balancer (replicas 2) | storaged directly | ratio |
|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns; median of $rounds alternating rounds) | $g4_bal | $g4_dir | $g4_ratio |
| GET 64 MiB, MB/s (wrk, 4 conns) | $g64_bal | $g64_dir | $(ratio "$g64_bal" "$g64_dir") |
| GET 1 MiB peak, requests/s (wrk, 16 conns) | $peak_bal | $peak_dir | $(ratio "$peak_bal" "$peak_dir") |
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
