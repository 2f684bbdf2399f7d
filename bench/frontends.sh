#!/bin/sh
# frontends.sh - what a second balancer adds behind HAProxy, in one run.
#
# Starts three storageds (replicas 2), two balancers and HAProxy with the
# shipped configs/frontends/haproxy.cfg (addresses rewritten), then measures
# GET 4 KiB requests/s (wrk, 32 connections) and PUT 1 MiB MB/s (ca-cas
# bench, 8 in flight, a new object each) through HAProxy -> 2 balancers and
# through HAProxy -> 1 balancer (the second one taken out by a config with
# one server), plus the same GET against one balancer directly (what HAProxy
# itself costs). Prints a Markdown table for bench/RESULTS.md. Usage:
#   bench/frontends.sh [BUILD_DIR] [SECONDS]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/cluster.sh"
secs=${2:-10}
cluster_init frontends "${1:-${CAS_BUILD:-$here/build-bench}}"
[ -x "$cli" ] || { echo "bench: $cli not built" >&2; exit 2; }
for t in wrk haproxy; do command -v $t >/dev/null || { echo "bench: $t not installed" >&2; exit 2; }; done

cluster_storageds
cluster_balancer "$balancerd" --drain-ms 0
b1=$bal_port
cluster_balancer "$balancerd" --drain-ms 0
b2=$bal_port
fp=$(freeport)
hapid=""
sleep 1

# start_haproxy N: HAProxy with the first N balancers as servers
start_haproxy() {
    if [ -n "$hapid" ]; then
        kill "$hapid"
        wait "$hapid" 2>/dev/null || true
        pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$hapid" | tr '\n' ' ')
    fi
    sed -e "s/10.0.0.11:6001/127.0.0.1:$b1/" -e "s/bind \*:8080/bind 127.0.0.1:$fp/" \
        -e "/log stdout/d" "$here/configs/frontends/haproxy.cfg" >"$tmp/haproxy.cfg"
    if [ "$1" = 2 ]; then
        sed -i "s/10.0.0.12:6001/127.0.0.1:$b2/" "$tmp/haproxy.cfg"
    else
        sed -i "/10.0.0.12:6001/d" "$tmp/haproxy.cfg"
    fi
    haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
    hapid=$!
    pids="$pids $hapid"
    wait_up "http://127.0.0.1:$fp"
    sleep 2.5 # health checks: every server up
}

k4=$(mkobj o4k 4096)
curl -fs -o /dev/null -T "$tmp/o4k" "http://127.0.0.1:$b1/objects/$k4"

mbs() { echo "$1" | awk '$1 == "put" {print $4}'; }
front=http://127.0.0.1:$fp
echo "running (${secs}s per measurement)..." >&2
start_haproxy 2
g2=$(reqs "$(wrk_run "$front/objects/$k4" 32)")
p2=$(mbs "$("$cli" --server "$front" bench -c 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)")
start_haproxy 1
g1=$(reqs "$(wrk_run "$front/objects/$k4" 32)")
p1=$(mbs "$("$cli" --server "$front" bench -c 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)")
gd=$(reqs "$(wrk_run "http://127.0.0.1:$b1/objects/$k4" 32)")

cat <<TABLE
| measurement | HAProxy -> 2 balancers | HAProxy -> 1 balancer | ratio 2/1 | 1 balancer directly |
|---|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns) | $g2 | $g1 | $(ratio "$g2" "$g1") | $gd |
| PUT 1 MiB, MB/s (ca-cas bench, 8 in flight, replicas 2) | $p2 | $p1 | $(ratio "$p2" "$p1") | |
TABLE
