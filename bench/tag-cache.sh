#!/bin/sh
# tag-cache.sh - what the balancer's block tags (balancerd/tagcache.h) cost
# and save on GET 64 MiB: first reads (hashed, tags taken) against later
# reads (checked with the tags), against a balancer without tags
# (BALANCERD_A, e.g. one built before them, or the same binary: it runs
# with --tag-cache-mb 0), and directly.
#
# Starts three storageds (replicas 2) and stores OBJECTS distinct 64 MiB
# objects. Then ROUNDS times, alternating: every object once through
# balancer A (tags off), three times through a freshly started balancer B
# (first reads: hashed, no tags taken; second reads: hashed, tags taken;
# third reads: checked with the tags), and directly from the first
# storaged. Reads are sequential, one curl at a time (-o /dev/null).
# Prints, per path, the median of the rounds of: MB/s (MB = 10^6 bytes) and
# the balancer's CPU per MB (utime + stime from /proc/PID/stat). Usage:
#   bench/tag-cache.sh BALANCERD_A BALANCERD_B [BUILD_DIR] [OBJECTS] [ROUNDS]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/cluster.sh"
bal_a=$1 bal_b=$2
nobj=${4:-8}
rounds=${5:-3}
cluster_init tags "${3:-${CAS_BUILD:-$here/build-bench}}"
for tool in "$bal_a" "$bal_b"; do
    [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 2; }
done

cluster_storageds
if "$bal_a" --help 2>&1 | grep -q -- --tag-cache-mb; then
    cluster_balancer "$bal_a" --tag-cache-mb 0
else
    cluster_balancer "$bal_a" # built before the tags
fi
pa=$bal_port pid_a=$bal_pid
keys=""
for i in $(seq "$nobj"); do
    k=$(mkobj "o$i" $((64 << 20)))
    curl -fs -o /dev/null -T "$tmp/o$i" "http://127.0.0.1:$pa/objects/$k"
    curl -fs -o /dev/null -T "$tmp/o$i" "$direct/objects/$k"
    rm -f "$tmp/o$i"
    keys="$keys $k"
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# read_all URL PID (0: none): "MB/s cpu_ms_per_MB" for one GET of each key
read_all() {
    c0=0; [ "$2" = 0 ] || c0=$(ticks "$2")
    t0=$(date +%s.%N)
    for k in $keys; do curl -fs -o /dev/null "$1/objects/$k"; done
    t1=$(date +%s.%N)
    c1=0; [ "$2" = 0 ] || c1=$(ticks "$2")
    awk -v n="$nobj" -v t0="$t0" -v t1="$t1" -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN {
        mb = n * 64 * 1.048576; printf "%.0f %.3f\n", mb / (t1 - t0), c * 1000 / hz / mb}'
}

a="" ac="" cold="" coldc="" tag="" tagc="" warm="" warmc="" d=""
for _ in $(seq "$rounds"); do
    set -- $(read_all "http://127.0.0.1:$pa" "$pid_a"); a="$a $1" ac="$ac $2"
    cluster_balancer "$bal_b"
    set -- $(read_all "$bal" "$bal_pid"); cold="$cold $1" coldc="$coldc $2"
    set -- $(read_all "$bal" "$bal_pid"); tag="$tag $1" tagc="$tagc $2"
    set -- $(read_all "$bal" "$bal_pid"); warm="$warm $1" warmc="$warmc $2"
    kill "$bal_pid"
    wait "$bal_pid" 2>/dev/null || true
    pids=$(for p in $pids; do [ "$p" = "$bal_pid" ] || printf '%s ' "$p"; done)
    set -- $(read_all "$direct" 0); d="$d $1"
done
ma=$(median $a) mcold=$(median $cold) mtag=$(median $tag) mwarm=$(median $warm) md=$(median $d)
cat <<TABLE
| GET 64 MiB, $nobj distinct objects, one curl at a time (median of $rounds rounds) | MB/s | / direct | balancer CPU ms per MB |
|---|---|---|---|
| balancer A, no tags (\`--tag-cache-mb 0\`): every read hashed | $ma | $(ratio "$ma" "$md") | $(median $ac) |
| balancer B, first reads (hashed; no tags taken) | $mcold | $(ratio "$mcold" "$md") | $(median $coldc) |
| balancer B, second reads (hashed, tags taken) | $mtag | $(ratio "$mtag" "$md") | $(median $tagc) |
| balancer B, third reads (checked with the tags) | $mwarm | $(ratio "$mwarm" "$md") | $(median $warmc) |
| direct (first storaged) | $md | 1.00 | |

rounds: A:$a / B first:$cold / B second:$tag / B third:$warm / direct:$d
TABLE
