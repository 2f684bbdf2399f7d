#!/usr/bin/env bash
# rebalance.sh - `ca-cas rebalance` at its default limits (4 copies at once,
# 100 MB/s), and what it costs the clients.
#
# Three storageds (three failure domains, equal capacity) and a balancer
# with replicas 2; MIB MiB of 1 MiB objects are stored through the
# balancer; then a fourth storaged is added to the config (balancer
# SIGHUPed) and `ca-cas rebalance` moves about a quarter of the copies onto
# it. Measured: MB/s moved (bytes copied / wall time of the run, listing
# included), and the open-loop latency (bench/latency.py) of 64 KiB GETs
# through the balancer at RATE/s, first with no rebalance, then while the
# rebalance runs. Writes the "rebalance" section of bench/RESULTS.md.
#
# Usage: bench/rebalance.sh [MIB] [RATE]   (defaults 1024, 200)
# Environment as bench/lib.sh: CAS_BUILD (default build-bench),
# CAS_BENCH_NO_BUILD=1 to use CAS_BUILD as it is, CAS_BENCH_TMP.
source "$(dirname "$0")/lib.sh"
bench_init rebalance "$@"
MIB=${1:-1024}
RATE=${2:-200}
if [ -z "${CAS_BENCH_NO_BUILD:-}" ]; then
    CAS_BENCH_REV=$(bench_rev)
    cmake -S "$ROOT" -B "$BUILD" -DCAS_BENCH=ON -DCAS_ASSERTS=ON >/dev/null
    cmake --build "$BUILD" -j2 --target ca-cas-storaged ca-cas-balancerd ca-cas >/dev/null
fi
CLI=$BUILD/ca-cas/ca-cas
BALANCERD=$BUILD/balancerd/ca-cas-balancerd

ports=()
for n in 1 2 3 4; do
    p=$(free_port)
    ports+=("$p")
    start_storaged "$BENCH_TMP/s$n" "$p" --capacity 64G
done
config() { # N: a config over the first N storageds
    echo "replicas: 2"
    echo "backends:"
    for ((i = 0; i < $1; i++)); do
        printf '  - url: http://127.0.0.1:%s\n    failure_domain: d%s\n' "${ports[$i]}" "$i"
    done
}
config 3 >"$BENCH_TMP/balancer.yaml"
config 4 >"$BENCH_TMP/four.yaml"
bp=$(free_port)
"$BALANCERD" --config "$BENCH_TMP/balancer.yaml" --listen "127.0.0.1:$bp" --log-level warn \
    --spool-dir "$BENCH_TMP" 2>>"$BENCH_TMP/balancerd.log" &
BAL_PID=$!
BENCH_PIDS+=("$BAL_PID")
bal=http://127.0.0.1:$bp
wait_http "$bal/healthz"
sleep 1 # first probes

echo "storing $MIB MiB of 1 MiB objects through the balancer" >&2
"$CLI" --server "$bal" bench -c 8 -s 1M --mix 1:0 --count "$MIB" --no-cleanup >/dev/null
head -c 65536 /dev/urandom >"$BENCH_TMP/probe"
probe=$("$CLI" --server "$bal" put "$BENCH_TMP/probe")

cp "$BENCH_TMP/four.yaml" "$BENCH_TMP/balancer.yaml"
kill -HUP "$BAL_PID"
sleep 2 # the new backend's ring

plan=$("$CLI" --json rebalance --config "$BENCH_TMP/four.yaml" --dry-run)
stored=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['objects'])" "$plan")
if [ "$stored" -lt "$MIB" ]; then
    echo "bench: the cluster holds $stored objects, not the $MIB stored: nothing to measure" >&2
    exit 1
fi
planned=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['copy_bytes_planned'])" "$plan")
# Long enough to cover most of the rebalance at 100 MB/s, at least 3 s.
lat_secs=$(calc "round(max(3, min(20, $planned / 1e8 * 0.7)), 1)")

echo "GET 64 KiB at $RATE/s for $lat_secs s, no rebalance" >&2
quiet=$(python3 "$BENCH_DIR/latency.py" "$bal/objects/$probe" "$RATE" "$lat_secs")

echo "rebalance, with the same GETs alongside" >&2
"$CLI" --json rebalance --config "$BENCH_TMP/four.yaml" >"$BENCH_TMP/run.json" &
RB_PID=$!
BENCH_PIDS+=("$RB_PID")
busy=$(python3 "$BENCH_DIR/latency.py" "$bal/objects/$probe" "$RATE" "$lat_secs")
wait "$RB_PID"
run=$(cat "$BENCH_TMP/run.json")
after=$("$CLI" --json rebalance --config "$BENCH_TMP/four.yaml" --dry-run)
# Headroom: the fourth storaged taken out of the config again, and its
# copies moved back with no bandwidth limit.
config 3 >"$BENCH_TMP/three.yaml"
back=$("$CLI" --json rebalance --config "$BENCH_TMP/three.yaml" --max-mbps 0)

out=$BENCH_TMP/section.md
python3 - "$plan" "$run" "$after" "$back" "$quiet" "$busy" "$MIB" "$RATE" "$lat_secs" >"$out" <<'PY'
import json, re, sys
plan, run, after, back = (json.loads(a) for a in sys.argv[1:5])
quiet, busy, mib, rate, secs = sys.argv[5:10]
def lat(line):
    return dict(re.findall(r"(rate|p50|p90|p99|errors) ([0-9.]+)", line))
q, b = lat(quiet), lat(busy)
stored = plan["bytes"] * 2
print("## Rebalance (rebalance.sh)\n")
print(f"Three storageds (equal capacity, three failure domains), a balancer with"
      f" `replicas: 2`, {mib} MiB of 1 MiB objects stored through it; a fourth storaged"
      f" added to the config, then `ca-cas rebalance` at its defaults (4 copies at"
      f" once, 100 MB/s), all on loopback on the same 2 cores.\n")
print("| measurement | value |\n|---|---|")
print(f"| objects | {plan['objects']} ({plan['bytes'] / 1e6:.0f} MB, {stored / 1e6:.0f} MB of copies) |")
print(f"| planned: copies to make / to remove | {plan['copies_planned']} / {plan['removals_planned']} |")
print(f"| bytes moved | {run['bytes_copied'] / 1e6:.0f} MB = {run['bytes_copied'] / stored:.3f} of the stored copies (a quarter expected; 64 tokens per backend leave a few points of spread) |")
print(f"| copies made / removed / failed | {run['copies_made']} / {run['removals_made']} / {run['copies_failed']} |")
print(f"| wall time (listing included) | {run['seconds']:.2f} s |")
print(f"| **rebalance throughput** | **{run['mb_per_s']:.1f} MB/s** moved |")
print(f"| left to do afterwards (dry run) | {after['copies_planned']} copies, {after['removals_planned']} removals |")
print(f"| the fourth taken out again, `--max-mbps 0` | {back['copies_made']} copies, {back['bytes_copied'] / 1e6:.0f} MB in {back['seconds']:.2f} s: **{back['mb_per_s']:.1f} MB/s** |")
print()
print(f"GET of a 64 KiB object through the balancer, open loop at {rate}/s for {secs} s"
      f" (`bench/latency.py`, latency from each request's scheduled time):\n")
print("| | rate | p50 | p90 | p99 | errors |\n|---|---|---|---|---|---|")
for name, d in (("no rebalance", q), ("during the rebalance", b)):
    print(f"| {name} | {d.get('rate')}/s | {d.get('p50')} ms | {d.get('p90')} ms | **{d.get('p99')} ms** | {d.get('errors')} |")
print()
print("Reading the numbers: at its defaults the rebalance runs at its 100 MB/s cap"
      " (the token bucket), well below what the cluster can move (the unlimited"
      " run); the cap is what keeps the clients' latency acceptable while it runs."
      " Copies made can be one short of the plan: the balancer's read repair had"
      " already put the latency probe object on its new home. The GETs, the four"
      " storageds, the balancer and the rebalance share two cores here, so the"
      " p99 during the rebalance includes CPU contention that separate machines"
      " would not have.")
PY
{
    cat "$out"
    echo
    machine_info "$BENCH_TMP"
} >"$out.full"
results_section "$out.full"
cat "$out.full"
