#!/usr/bin/env bash
# start.sh - the README's first command: installs missing Debian packages,
# builds, and starts a local ca-cas system on loopback (three storageds in
# three failure domains and one balancer, data under var/local-cluster/).
# Ctrl-C stops every process it started.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/install-deps.sh"
echo "start: building into $top/build ..." >&2
"$top/scripts/build.sh" plain
exec "$top/scripts/local-cluster.sh" "$top/build"
