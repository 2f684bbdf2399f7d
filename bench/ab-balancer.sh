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
. "$here/bench/cluster.sh"
bal_a=$1 bal_b=$2
secs=${4:-5}
rounds=${5:-5}
cluster_init ab "${3:-${CAS_BUILD:-$here/build-bench}}"
for tool in "$bal_a" "$bal_b"; do
    [ -x "$tool" ] || { echo "bench: $tool not found" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "bench: wrk not installed" >&2; exit 2; }

cluster_storageds
cluster_balancer "$bal_a"
pa=$bal_port
cluster_balancer "$bal_b"
pb=$bal_port
sleep 1
k4=$(mkobj o4k 4096)
k64=$(mkobj o64m $((64 << 20)))
for k in "$k4:o4k" "$k64:o64m"; do
    key=${k%%:*} file=${k#*:}
    curl -fs -o /dev/null -T "$tmp/$file" "http://127.0.0.1:$pa/objects/$key"
    curl -fs -o /dev/null -T "$tmp/$file" "$direct/objects/$key"
done
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
ma4=$(median $a4) mb4=$(median $b4) md4=$(median $d4)
ma64=$(median $a64) mb64=$(median $b64) md64=$(median $d64)
cat <<TABLE
| measurement (median of $rounds alternating rounds of ${secs}s) | balancer A | balancer B | direct | A/direct | B/direct | B/A |
|---|---|---|---|---|---|---|
| GET 4 KiB, requests/s (wrk, 32 conns) | $ma4 | $mb4 | $md4 | $(ratio $ma4 $md4) | $(ratio $mb4 $md4) | $(ratio $mb4 $ma4) |
| GET 64 MiB, MB/s (wrk, 4 conns) | $ma64 | $mb64 | $md64 | $(ratio $ma64 $md64) | $(ratio $mb64 $md64) | $(ratio $mb64 $ma64) |

rounds, GET 4 KiB A:$a4 / B:$b4 / direct:$d4; GET 64 MiB A:$a64 / B:$b64 / direct:$d64
TABLE
