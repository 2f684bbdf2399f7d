#!/usr/bin/env bash
# install-deps.sh - installs the Debian 12 packages ca-cas needs to build,
# test and benchmark. Idempotent: when everything is present it only checks
# (well under a second). Run as root (or with sudo available).
set -euo pipefail

packages=(
  gcc make cmake pkg-config                  # build
  libmicrohttpd-dev libcurl4-openssl-dev     # HTTP server and client
  libgnutls28-dev openssl                    # TLS: server certificates (GnuTLS, as libmicrohttpd), test CAs
  libyaml-dev libssl-dev zlib1g-dev          # config, hashes, checksums
  libarchive-dev                             # ca-cas export/import (tar)
  libjansson-dev                             # reading JSON: replies between daemons (common/json.c, GET /ring), ca-cas status
  libcunit1-dev                              # unit tests
  lcov                                       # scripts/coverage.sh (lcov, genhtml; gcov comes with gcc)
  help2man dpkg-dev                          # man pages, the Debian package (cpack)
  clang libclang-rt-14-dev                   # fuzz targets (libFuzzer, ASan, UBSan)
  python3 curl procps util-linux e2fsprogs   # integration tests
  wrk nginx-light                            # benchmarks, front-end tests
  haproxy                                    # front-end tests (configs/frontends)
  prometheus                                 # monitoring test (a real Prometheus, promtool)
  chromium                                   # the balancer page test (headless)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
