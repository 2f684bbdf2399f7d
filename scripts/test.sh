#!/usr/bin/env bash
# test.sh - the whole test suite: installs missing packages, builds plain and
# sanitized (ASan + UBSan), runs the CUnit suites of both builds and the
# integration tests (real daemons on loopback ports) against both builds,
# and every libFuzzer target for a short fixed time (tests/fuzz/run.sh,
# build-fuzz/; one test per target).
# Prints "N passed, N failed" at the end; exits non-zero on any failure.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/install-deps.sh" || exit 1
echo "== build (plain and ASan+UBSan)"
"$top/scripts/build.sh" all || exit 1

passed=0; failed=0; skipped=0
count_ctest() { # dir
  local out
  out=$(cd "$1" && ctest -j2 --output-on-failure 2>&1)
  echo "$out" | tail -n 40
  local total fails
  total=$(echo "$out" | sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' | tail -1)
  fails=$(echo "$out" | sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' | tail -1)
  total=${total:-0}; fails=${fails:-1}
  local skips
  skips=$(echo "$out" | grep -cE '\*\*\*Skipped|\(Disabled\)' || true)
  passed=$((passed + total - fails - skips)); failed=$((failed + fails)); skipped=$((skipped + skips))
}
count_integration() { # build dir, extra env
  local out
  # two modules at a time (run.py: those that time themselves run alone)
  out=$(env CAS_BUILD_DIR="$top/$1" ${2:-} python3 "$top/tests/integration/run.py" --jobs 2 2>&1)
  echo "$out" | grep -vE ' \.\.\. ok$|^Ran [0-9]+ tests? in |^OK( \(skipped=[0-9]+\))?$|^-+$|^$' | tail -n 80
  local line p f s
  line=$(echo "$out" | grep -E '^integration .*passed' | tail -1)
  p=$(echo "$line" | sed -n 's/.*: \([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
  p=${p:-0}; f=${f:-1}; s=${s:-0}
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

count_fuzz() { # each libFuzzer target is one test
  local out line p f
  out=$("$top/tests/fuzz/run.sh" 2>&1)
  echo "$out" | tail -n 40
  line=$(echo "$out" | grep -E '^fuzz: [0-9]+ passed' | tail -1)
  p=$(echo "$line" | sed -n 's/^fuzz: \([0-9]*\) passed.*/\1/p'); f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
  p=${p:-0}; f=${f:-1}
  passed=$((passed + p)); failed=$((failed + f))
}

echo "== unit tests (plain)";     count_ctest build
echo "== unit tests (ASan+UBSan)"; count_ctest build-asan
echo "== integration tests (plain)"; count_integration build
echo "== integration tests (ASan+UBSan)"
count_integration build-asan "CAS_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
echo "== fuzz targets (libFuzzer, ASan+UBSan, ${FUZZ_SECONDS:-6} s each)"; count_fuzz
echo "all suites: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
