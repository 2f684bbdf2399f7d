#!/usr/bin/env bash
# run-all.sh - runs every benchmark of issue 2 in turn and rewrites
# bench/RESULTS.md from scratch (each script adds its own section; a summary
# of the headline figures goes at the end). About 5 minutes in all.
#
#   bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
results=bench/RESULTS.md
# Each script refreshes its own section; other sections (the balancer's) stay.
summary=$(mktemp -p "${CAS_BENCH_TMP:-/var/tmp}" cas-bench-summary.XXXXXX)
trap 'rm -f "$summary"' EXIT
source bench/lib.sh
export CAS_BENCH_REV
CAS_BENCH_REV=$(bench_rev)
cmake -S . -B "$BUILD" -DCAS_BENCH=ON -DCAS_ASSERTS=ON >/dev/null
cmake --build "$BUILD" -j2 --target ca-cas-storaged cas-bench-putload cas-bench-fsyncloop \
    cas-bench-replay >/dev/null
for b in get-small get-large put-large put-small replay; do
    echo "== bench/$b.sh"
    CAS_BENCH_NO_BUILD=1 "bench/$b.sh" | tee "$summary.out"
    grep "^$b" "$summary.out" | sed 's/^/- /' >>"$summary"
done
rm -f "$summary.out"
{
    echo "## Summary (bench/run-all.sh, $(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    cat "$summary"
} >"$summary.md"
BENCH_NAME=summary
results_section "$summary.md"
rm -f "$summary.md"
