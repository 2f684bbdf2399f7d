#!/usr/bin/env bash
# coverage.sh [unit|all|report] - measures line and branch coverage of common/,
# storaged/, balancerd/ and ca-cas/ with gcov and lcov.
#
# Builds build-cov/ (gcc --coverage -O0, asserts on, its own build dir so it
# never disturbs build/ or build-asan/), zeroes the counters, runs the CUnit
# suites (ctest) and, unless "unit" is given, the integration suite against
# the daemons of build-cov/ (CAS_COVERAGE=1 makes the harness stop daemons
# with SIGINT so they exit through main() and gcov writes their counters).
# Then it prints the line and branch coverage of each directory and of each
# file (weakest first), and writes an HTML report with genhtml to
# build-cov/coverage-html/index.html. The raw data is build-cov/coverage.info.
# "report" only reads the counters an earlier run left (no build, no tests).
#
# Slow (the integration suite takes several minutes more than in build/):
# it is not part of scripts/test.sh. The machine may be shared: run it under
# nice. Works from a clean checkout; needs lcov (scripts/install-deps.sh).
# Exits 1 when a test failed (the figures are still printed: they then
# undercount), 2 on a usage or build error or when s3rver is missing (the
# integration suite needs it: scripts/install-deps.sh).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
case "$what" in unit|all|report) ;; *) echo "usage: coverage.sh [unit|all|report]" >&2; exit 2 ;; esac
for tool in lcov genhtml gcov; do
  command -v "$tool" >/dev/null || { echo "coverage.sh: $tool missing: run scripts/install-deps.sh" >&2; exit 2; }
done
# The integration suite's S3 tests need s3rver (npm ci --prefix tests/s3): a
# fresh worktree lacks it, and every S3 test would error, leaving the S3
# backend's files near 0% after 10 minutes of running. Say so at once.
if [ "$what" = all ] && [ ! -x "$top/tests/s3/node_modules/.bin/s3rver" ]; then
  echo "coverage.sh: s3rver missing: run scripts/install-deps.sh (npm ci --prefix tests/s3)" >&2
  exit 2
fi
bdir="$top/build-cov"
jobs=${COV_JOBS:-2}
dirs=(common storaged balancerd ca-cas)
rc=(--rc lcov_branch_coverage=1)

# Counters of the project's own objects only (the test executables' are
# not wanted, and a stale one would stop gcov); set once build-cov exists.
objdirs=()
set_objdirs() { objdirs=(); for d in "${dirs[@]}"; do [ -d "$bdir/$d" ] && objdirs+=(--directory "$bdir/$d"); done; }
failed=0
if [ "$what" != report ]; then
  echo "== build (build-cov: --coverage -O0, asserts on)"
  # Debug: -g -O0 and no -DNDEBUG, so every assert() runs and counts. The
  # daemons are threaded: atomic counter updates, or racing increments are
  # lost and gcov derives negative counts.
  cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE=Debug -DCAS_ASSERTS=ON \
    -DCMAKE_C_FLAGS="--coverage -O0 -fprofile-update=atomic" -DCMAKE_EXE_LINKER_FLAGS="--coverage" \
    -DCMAKE_SHARED_LINKER_FLAGS="--coverage" -DCMAKE_MODULE_LINKER_FLAGS="--coverage" >/dev/null || exit 2
  # The build runs the tool (help2man): its counters are dropped below.
  cmake --build "$bdir" -j"$jobs" >"$bdir/cov-build.log" 2>&1 || { tail -n 30 "$bdir/cov-build.log"; exit 2; }

  # Counters from an earlier run would add up with this one's.
  find "$bdir" -name '*.gcda' -delete
  set_objdirs
  # The baseline lists every line of every compiled file at zero, so a file
  # that no test reaches shows up at 0% instead of not at all.
  lcov -q "${rc[@]}" --capture --initial "${objdirs[@]}" --base-directory "$top" \
    --output-file "$bdir/cov-base.info" 2>"$bdir/cov-lcov.log" || { tail -n 5 "$bdir/cov-lcov.log"; exit 2; }

  echo "== unit tests (ctest, build-cov)"
  (cd "$bdir" && ctest --output-on-failure -j"$jobs") >"$bdir/cov-unit.log" 2>&1 || failed=1
  tail -n 3 "$bdir/cov-unit.log"
  if [ "$what" = all ]; then
    echo "== integration tests (build-cov)"
    CAS_BUILD_DIR="$bdir" CAS_COVERAGE=1 python3 "$top/tests/integration/run.py" >"$bdir/cov-integration.log" 2>&1 || failed=1
    grep -E '^(FAIL|ERROR):' "$bdir/cov-integration.log" | head -n 40
    tail -n 1 "$bdir/cov-integration.log"
  fi
fi

set_objdirs
[ ${#objdirs[@]} -gt 0 ] || { echo "coverage.sh: no build-cov/ to report on: run it without \"report\" first" >&2; exit 2; }
lcov -q "${rc[@]}" --capture "${objdirs[@]}" --base-directory "$top" \
  --output-file "$bdir/cov-run.info" 2>"$bdir/cov-lcov.log" || { tail -n 5 "$bdir/cov-lcov.log"; exit 2; }
lcov -q "${rc[@]}" -a "$bdir/cov-base.info" -a "$bdir/cov-run.info" -o "$bdir/cov-all.info" 2>/dev/null || exit 2
# Only the project's own sources: not tests/, bench/ or system headers.
extract=()
for d in "${dirs[@]}"; do extract+=("$top/$d/*"); done
lcov -q "${rc[@]}" --extract "$bdir/cov-all.info" "${extract[@]}" -o "$bdir/coverage.info" 2>/dev/null || exit 2

# One line per file from the tracefile: LF/LH lines found/hit, BRF/BRH
# branches found/hit. Printed as "dir file line% (hit/found) branch% ...".
summarise() { # tracefile
  awk -v top="$top/" '
    /^SF:/ { f = substr($0, 4); sub(top, "", f) }
    /^LF:/ { lf[f] += substr($0, 4) } /^LH:/ { lh[f] += substr($0, 4) }
    /^BRF:/ { bf[f] += substr($0, 5) } /^BRH:/ { bh[f] += substr($0, 5) }
    END { for (f in lf) { d = f; sub("/.*", "", d); print d, f, lf[f], lh[f], bf[f] + 0, bh[f] + 0 } }' "$1"
}
pct() { awk -v h="$1" -v f="$2" 'BEGIN { if (f == 0) printf "  -   "; else printf "%5.1f%%", 100 * h / f }'; }
summarise "$bdir/coverage.info" >"$bdir/cov-files.txt"

echo "== coverage by directory ($what; lines, branches)"
printf '%-10s %-22s %-22s\n' dir lines branches
for d in "${dirs[@]}" total; do
  read -r lf lh bf bh < <(awk -v d="$d" '$1 == d || d == "total" { lf += $3; lh += $4; bf += $5; bh += $6 }
    END { print lf + 0, lh + 0, bf + 0, bh + 0 }' "$bdir/cov-files.txt")
  printf '%-10s %s %-14s %s %s\n' "$d" "$(pct "$lh" "$lf")" "($lh/$lf)" "$(pct "$bh" "$bf")" "($bh/$bf)"
done
echo "== coverage by file, weakest lines first"
printf '%-34s %-20s %-20s\n' file lines branches
awk '{ printf "%s %d %d %d %d %.4f\n", $2, $3, $4, $5, $6, ($3 ? $4 / $3 : 1) }' "$bdir/cov-files.txt" |
  sort -k6,6n -k1,1 | while read -r f lf lh bf bh _; do
    printf '%-34s %s %-12s %s %s\n' "$f" "$(pct "$lh" "$lf")" "($lh/$lf)" "$(pct "$bh" "$bf")" "($bh/$bf)"
  done

genhtml -q "${rc[@]}" --legend --title "ca-cas coverage ($what)" --prefix "$top" \
  -o "$bdir/coverage-html" "$bdir/coverage.info" >/dev/null 2>&1 &&
  echo "HTML report: $bdir/coverage-html/index.html"
[ "$failed" -eq 0 ] || { echo "coverage.sh: some tests failed (logs: $bdir/cov-unit.log, $bdir/cov-integration.log)" >&2; exit 1; }
