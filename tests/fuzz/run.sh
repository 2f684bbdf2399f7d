#!/usr/bin/env bash
# run.sh [-t SECONDS] [TARGET...] - builds the libFuzzer targets of
# tests/fuzz into build-fuzz/ (clang, ASan+UBSan) and runs each for a fixed
# time over its seed corpus (tests/fuzz/corpus/<name>/, read only; what the
# fuzzer learns goes to build-fuzz/fuzz-corpus/<name>/ and is kept for the
# next run). Default: every target, FUZZ_SECONDS (6) seconds each.
#
# Prints one line per target with its executions and coverage (libFuzzer's
# cov/ft), then "fuzz: N passed, N failed". Exits non-zero when a target
# crashes or a sanitizer reports: the reproducer is left in
# build-fuzz/fuzz-artifacts/ and the tail of the report is printed. Rerun
# one input with: build-fuzz/tests/fuzz/fuzz_<name> FILE
# FUZZ_NO_BUILD=1 skips the build (for several runs side by side).
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${FUZZ_SECONDS:-6}
if [ "${1:-}" = "-t" ]; then secs=$2; shift 2; fi
bdir="$top/build-fuzz"
jobs=$(nproc 2>/dev/null || echo 2)

if ! command -v clang >/dev/null; then
  echo "run.sh: clang not found (scripts/install-deps.sh installs it)" >&2
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
if [ -n "${FUZZ_NO_BUILD:-}" ]; then
  echo "== fuzz targets in $bdir (not rebuilt: FUZZ_NO_BUILD)"
else
echo "== building the fuzz targets in $bdir"
if ! (CC=clang cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAS_FUZZ=ON >/dev/null &&
      cmake --build "$bdir" -j"$jobs" --target fuzz >"$bdir/fuzz-build.log" 2>&1); then
  tail -n 30 "$bdir/fuzz-build.log" >&2
  echo "fuzz: 0 passed, 1 failed"
  exit 1
fi
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in "$top"/tests/fuzz/*.c; do targets+=("$(basename "$f" .c)"); done
fi

passed=0; failed=0
mkdir -p "$bdir/fuzz-artifacts"
for t in "${targets[@]}"; do
  bin="$bdir/tests/fuzz/fuzz_$t"
  seeds="$top/tests/fuzz/corpus/$t"
  work="$bdir/fuzz-corpus/$t"
  log="$bdir/fuzz-artifacts/$t.log"
  mkdir -p "$work" "$seeds"
  if [ ! -x "$bin" ]; then
    echo "fuzz $t: FAILED (no binary $bin)"; failed=$((failed + 1)); continue
  fi
  # Targets that need files make them under TMPDIR and remove them at exit;
  # a crash skips that, so each target gets its own directory, removed here.
  scratch=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )/cas-fuzz-run-XXXXXX")
  # The *_http targets serve each input on server threads that may still be
  # exiting when the input returns: libFuzzer's leak check after each input
  # would then see their thread-local caches as leaked. Their leaks are
  # checked where a daemon really stops: test_http_fuzz.py (SIGTERM, exit 0
  # under ASan with detect_leaks=1).
  extra=()
  case $t in *_http) extra=(-detect_leaks=0) ;; esac
  # -timeout: one input taking this long is a finding (a hang); the RSS
  # limit catches inputs that make memory grow without bound.
  TMPDIR=$scratch ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 "${extra[@]}" \
    -print_final_stats=1 -artifact_prefix="$bdir/fuzz-artifacts/$t-" \
    "$work" "$seeds" >"$log" 2>&1
  rc=$?
  rm -rf "$scratch"
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  if [ $rc -eq 0 ] && [ -n "$done_line" ]; then
    echo "fuzz $t: ok, ${runs:-?} runs in ${secs}s, cov ${cov:-?} ft ${ft:-?}"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED (exit $rc); log $log"
    grep -E 'ERROR|SUMMARY|runtime error|property broken|Test unit written' "$log" | head -n 8
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
