#!/bin/sh
# balancer-cpu.sh - CPU per MB of GET 64 MiB: through balancer A, balancer B
# and directly, and what that allows on the machine's cores.
#
# On a shared 2-core VM the MB/s of bench-balancer.sh and ab-balancer.sh
# follow whatever else runs; CPU time per MB moved does much less, and it
# is what bounds the ratio once the cores are busy. Starts three storageds
# (replicas 2) and balancers A and B (same config), stores one 64 MiB
# object, then ROUNDS times, alternating: wrk -t2 -c4 for SECONDS against A,
# B and the first storaged directly, reading the CPU time (utime + stime,
# /proc/PID/stat) the balancer and the three storageds used, and wrk's own
# (/usr/bin/time). Prints, per path, the median of the rounds of: MB/s, and
# ms of CPU per MB (MB = 10^6 bytes received by wrk) of the balancer, the
# storageds and wrk; and the ratio to direct that those costs allow when
# the cores are saturated: (storageds + wrk, direct) / (sum, through the
# balancer). Also prints `openssl speed` for SHA-1: the balancer's floor,
# since it hashes every byte it relays. Usage:
#   bench/balancer-cpu.sh BALANCERD_A BALANCERD_B [BUILD_DIR] [SECONDS] [ROUNDS]
# (storaged from BUILD_DIR, default build-bench; A may equal B).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/bench/cluster.sh"
bal_a=$1 bal_b=$2
secs=${4:-5}
rounds=${5:-3}
cluster_init cpu "${3:-${CAS_BUILD:-$here/build-bench}}"
for tool in "$bal_a" "$bal_b"; do
    [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 2; }
done
for tool in wrk /usr/bin/time openssl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not installed" >&2; exit 2; }
done

cluster_storageds
cluster_balancer "$bal_a"
pa=$bal_port pid_a=$bal_pid
cluster_balancer "$bal_b"
pb=$bal_port pid_b=$bal_pid
sleep 1
k64=$(mkobj o64m $((64 << 20)))
curl -fs -o /dev/null -T "$tmp/o64m" "http://127.0.0.1:$pa/objects/$k64"
curl -fs -o /dev/null -T "$tmp/o64m" "$direct/objects/$k64"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sticks() { t=0; for p in $spids; do t=$((t + $(ticks "$p"))); done; echo $t; }
hz=$(getconf CLK_TCK)
# measure URL BALANCER_PID (0: none): "MB/s balancer storageds wrk" (ms/MB)
measure() {
    b0=0; [ "$2" = 0 ] || b0=$(ticks "$2")
    s0=$(sticks)
    out=$(/usr/bin/time -f "WRKCPU %U %S" wrk -t2 -c4 -d"${secs}s" "$1" 2>&1)
    b1=0; [ "$2" = 0 ] || b1=$(ticks "$2")
    s1=$(sticks)
    echo "$out" | awk -v b=$((b1 - b0)) -v s=$((s1 - s0)) -v hz="$hz" -v secs="$secs" '
        /requests in/ {v=$5; sub(/,/, "", v); u=v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+/, "", v);
            mb = v * (u=="GB" ? 1073.741824 : u=="MB" ? 1.048576 : u=="KB" ? 0.001024 : 0.000001)}
        /WRKCPU/ {w = ($2 + $3) * 1000}
        END {if (mb <= 0) {print "0 0 0 0"; exit}
            printf "%.0f %.3f %.3f %.3f\n", mb / secs, b * 1000 / hz / mb, s * 1000 / hz / mb, w / mb}'
}

load0=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$tmp/rows"
for r in $(seq "$rounds"); do
    echo "A $(measure "http://127.0.0.1:$pa/objects/$k64" $pid_a)" >>"$tmp/rows"
    echo "B $(measure "http://127.0.0.1:$pb/objects/$k64" $pid_b)" >>"$tmp/rows"
    echo "D $(measure "$direct/objects/$k64" 0)" >>"$tmp/rows"
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
col() { median $(awk -v p="$1" -v c="$2" '$1 == p {print $c}' "$tmp/rows"); }
ds=$(col D 4) dw=$(col D 5)
sha=$(openssl speed -evp sha1 -seconds 1 -bytes 1048576 2>/dev/null | awk '/^sha1/ {print $NF}')
shams=$(awk -v k="${sha%k}" 'BEGIN {printf "%.3f", 1e6 / k}') # openssl prints 1000s of bytes/s

echo "| path (median of $rounds alternating rounds of ${secs}s, wrk -t2 -c4) | MB/s | balancer ms CPU/MB | storageds ms CPU/MB | wrk ms CPU/MB | ratio to direct the CPU allows |"
echo "|---|---|---|---|---|---|"
for p in A B D; do
    mbs=$(col $p 2) b=$(col $p 3) s=$(col $p 4) w=$(col $p 5)
    allow=$(awk -v ds="$ds" -v dw="$dw" -v b="$b" -v s="$s" -v w="$w" 'BEGIN {printf "%.2f", (ds + dw) / (b + s + w)}')
    name=$p; [ $p = A ] && name="balancer A"; [ $p = B ] && name="balancer B"; [ $p = D ] && name="direct"
    echo "| $name | $mbs | $b | $s | $w | $allow |"
done
awk -v ds="$ds" -v dw="$dw" -v sh="$shams" -v s="$(col B 4)" -v w="$(col B 5)" 'BEGIN {
    printf "\nSHA-1 alone (openssl speed -evp sha1, 1 MiB blocks): %s ms CPU/MB; a balancer costing only that would allow %.2f\n", sh, (ds + dw) / (sh + s + w)}'
echo "rounds (path MB/s balancer storageds wrk):"
cat "$tmp/rows"
echo "load average at start: $load0; at end: $load1"
