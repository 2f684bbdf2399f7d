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
  libexpat1-dev                              # reading S3's XML answers (storaged/s3_xml.c)
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
# Node and npm (Debian's) only when absent: a newer Node already on the
# machine runs s3rver as well, and apt must not replace it.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# s3rver, the S3-compatible server the S3 backend's tests start (tests/s3:
# the version pinned by package-lock.json, installed exactly with npm ci).
top=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$top/tests/s3/node_modules/.bin/s3rver" ]; then
  echo "install-deps: installing s3rver (npm ci --prefix tests/s3)" >&2
  npm ci --prefix "$top/tests/s3" --no-audit --no-fund >/dev/null
fi
