#!/usr/bin/env bash
# explore.sh - the full power-loss exploration: every workload, both crash
# models, every crash point after an answer or a directory change plus a
# sample, niced (the machine is shared). Prints the figures recorded in
# docs/TESTING.md ("Power-loss crash states"); exits 1 on any violation
# other than the known ones listed in explore.py (EXPECTED).
#   BUILD=build tests/crash/explore.sh [extra explore.py options]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
exec nice -n 15 python3 "$top/tests/crash/explore.py" --build "$build" \
  --max-points "${POINTS:-400}" --per-point "${PER_POINT:-12}" --sample 80 \
  --seconds "${SECONDS_BUDGET:-1500}" --json "${JSON:-/dev/null}" "$@"
