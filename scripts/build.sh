#!/usr/bin/env bash
# build.sh [plain|asan|all] - configures and builds ca-cas into build/ (plain)
# and build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-plain}
jobs=$(nproc 2>/dev/null || echo 2)
build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S "$top" -B "$top/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$top/$dir" -j"$jobs" >/dev/null
}
case "$what" in
  plain) build build ;;
  asan) build build-asan -DCAS_SANITIZE=ON ;;
  all) build build; build build-asan -DCAS_SANITIZE=ON ;;
  *) echo "usage: build.sh [plain|asan|all]" >&2; exit 2 ;;
esac
