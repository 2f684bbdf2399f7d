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
build=${1:-${CAS_BUILD:-$here/build-bench}}
secs=${2:-10}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
storaged=$build/storaged/ca-cas-storaged
balancerd=$build/balancerd/ca-cas-balancerd
cli=$build/ca-cas/ca-cas
for tool in "$storaged" "$balancerd" "$cli"; do
    [ -x "$tool" ] || { echo "bench: $tool not built" >&2; exit 2; }
done
for t in wrk haproxy; do command -v $t >/dev/null || { echo "bench: $t not installed" >&2; exit 2; }; done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cas-bench-XXXXXX")
pids=""
hapid=""
cleanup() {
    for pid in $pids $hapid; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids $hapid; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { i=0; until curl -fs "$1/healthz" >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { echo "bench: $1 not up" >&2; exit 1; }; sleep 0.1; done; }

{ echo "replicas: 2"; echo "backends:"; } >"$tmp/balancer.yaml"
for n in 1 2 3; do
    p=$(freeport)
    "$storaged" --dir "$tmp/s$n" --listen "127.0.0.1:$p" --log-level warn --scrub-rate 0 \
        >"$tmp/s$n.log" 2>&1 &
    pids="$pids $!"
    printf '  - url: http://127.0.0.1:%s\n    failure_domain: d%s\n' "$p" "$n" >>"$tmp/balancer.yaml"
    wait_up "http://127.0.0.1:$p"
done
b1=$(freeport) b2=$(freeport) fp=$(freeport)
for bp in $b1 $b2; do
    "$balancerd" --config "$tmp/balancer.yaml" --listen "127.0.0.1:$bp" --log-level warn \
        --spool-dir "$tmp" --drain-ms 0 >"$tmp/balancerd-$bp.log" 2>&1 &
    pids="$pids $!"
    wait_up "http://127.0.0.1:$bp"
done
sleep 1

# start_haproxy N: HAProxy with the first N balancers as servers
start_haproxy() {
    if [ -n "$hapid" ]; then kill "$hapid"; wait "$hapid" 2>/dev/null || true; fi
    sed -e "s/10.0.0.11:6001/127.0.0.1:$b1/" -e "s/bind \*:8080/bind 127.0.0.1:$fp/" \
        -e "/log stdout/d" "$here/configs/frontends/haproxy.cfg" >"$tmp/haproxy.cfg"
    if [ "$1" = 2 ]; then
        sed -i "s/10.0.0.12:6001/127.0.0.1:$b2/" "$tmp/haproxy.cfg"
    else
        sed -i "/10.0.0.12:6001/d" "$tmp/haproxy.cfg"
    fi
    haproxy -db -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
    hapid=$!
    wait_up "http://127.0.0.1:$fp"
    sleep 2.5 # health checks: every server up
}

head -c 4096 /dev/urandom >"$tmp/o4k"
k4=$(sha1sum "$tmp/o4k" | cut -c1-40)
curl -fs -o /dev/null -T "$tmp/o4k" "http://127.0.0.1:$b1/objects/$k4"

reqs() { echo "$1" | awk '/Requests\/sec/ {printf "%.0f", $2}'; }
mbs() { echo "$1" | awk '$1 == "put" {print $4}'; }
front=http://127.0.0.1:$fp
echo "running (${secs}s per measurement)..." >&2
start_haproxy 2
g2=$(reqs "$(wrk -t2 -c32 -d"${secs}s" "$front/objects/$k4" 2>&1)")
p2=$(mbs "$("$cli" --server "$front" bench -c 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)")
start_haproxy 1
g1=$(reqs "$(wrk -t2 -c32 -d"${secs}s" "$front/objects/$k4" 2>&1)")
p1=$(mbs "$("$cli" --server "$front" bench -c 8 --size 1M --mix 1:0 --duration "${secs}s" 2>&1 || true)")
gd=$(reqs "$(wrk -t2 -c32 -d"${secs}s" "http://127.0.0.1:$b1/objects/$k4" 2>&1)")

r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a/b : 0}'; }
cat <<TABLE
| measurement | HAProxy -> 2 balancers | HAProxy -> 1 balancer | ratio 2/1 | 1 balancer directly |
|---|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns) | $g2 | $g1 | $(r "$g2" "$g1") | $gd |
| PUT 1 MiB, MB/s (ca-cas bench, 8 in flight, replicas 2) | $p2 | $p1 | $(r "$p2" "$p1") | |
TABLE
