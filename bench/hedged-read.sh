#!/bin/sh
# hedged-read.sh - GET latency through a balancer while one backend hangs.
#
# Three storageds (three failure domains) and a balancer with replicas 2 on
# loopback. 48 objects of 1 MiB are stored through the balancer. Then:
#  1. nothing frozen: CLIENT_THREADS (default 2) closed-loop clients GET the objects for SECONDS; the
#     balancer's cas_balancer_hedged_reads_total over the GETs served is the
#     share of extra backend requests that hedging costs when all is well;
#  2. one storaged frozen with SIGSTOP (it accepts connections and never
#     answers): the same GETs for SECONDS, starting the moment it froze
#     (before the probes have noticed: the worst moment), p50/p99/max.
# Both runs are done with the balancer's default hedging and again with
# --hedge-max-ms 0 (no hedged reads) for comparison. Usage:
#   bench/hedged-read.sh [BUILD_DIR] [SECONDS] [CLIENT_THREADS]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/cluster.sh"
secs=${2:-5}
threads=${3:-2}
cluster_init hedge "${1:-${CAS_BUILD:-$here/build-bench}}"

cat > "$tmp/load.py" <<'PY'
# load.py URL KEYFILE SECONDS THREADS: closed-loop GETs of the keys, prints
# "n p50 p99 max errors" (ms) over all requests.
import http.client, sys, threading, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
keys = open(sys.argv[2]).read().split()
secs, threads = float(sys.argv[3]), int(sys.argv[4])
lat, errs, lock = [], [0], threading.Lock()
end = time.time() + secs
def run(t):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    i = t
    while time.time() < end:
        k = keys[i % len(keys)]
        i += threads
        t0 = time.perf_counter()
        try:
            c.request("GET", "/objects/" + k)
            r = c.getresponse()
            body = r.read()
            ok = r.status == 200 and len(body) == 1 << 20
        except Exception:
            ok = False
            c.close()
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        dt = (time.perf_counter() - t0) * 1000
        with lock:
            lat.append(dt)
            if not ok:
                errs[0] += 1
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))]
print(len(lat), "%.2f" % q(0.5), "%.2f" % q(0.99), "%.2f" % lat[-1], errs[0])
PY

run_case() { # run_case LABEL BALANCER_EXTRA...
    label=$1; shift
    cluster_storageds
    cluster_balancer "$balancerd" "$@"
    sleep 1
    : >"$tmp/keys"
    for i in $(seq 48); do
        k=$(mkobj o 1048576)
        curl -fs -o /dev/null -T "$tmp/o" "$bal/objects/$k"
        echo "$k" >>"$tmp/keys"
    done
    metric() { curl -s "$bal/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
    h0=$(metric cas_balancer_hedged_reads_total)
    set -- $(python3 "$tmp/load.py" "$bal" "$tmp/keys" "$secs" "$threads")
    h1=$(metric cas_balancer_hedged_reads_total)
    extra=$(awk -v a="$h0" -v b="$h1" -v n="$1" 'BEGIN {printf "%.1f", n ? 100 * (b - a) / n : 0}')
    echo "| $label | nothing frozen | $1 | $2 | $3 | $4 | $5 | $((h1 - h0)) ($extra %) |"
    frozen=$(echo $spids | cut -d' ' -f1)
    kill -STOP "$frozen"
    set -- $(python3 "$tmp/load.py" "$bal" "$tmp/keys" "$secs" "$threads")
    h2=$(metric cas_balancer_hedged_reads_total)
    echo "| $label | one of three SIGSTOPped | $1 | $2 | $3 | $4 | $5 | $((h2 - h1)) |"
    kill -CONT "$frozen"
    cluster_stop
}

echo "| balancer | backends | GETs | p50 ms | p99 ms | max ms | errors | hedged requests |"
echo "|---|---|---|---|---|---|---|---|"
run_case "hedged reads (default)"
run_case "no hedging (--hedge-max-ms 0)" --hedge-max-ms 0
