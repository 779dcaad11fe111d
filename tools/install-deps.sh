#!/usr/bin/env bash
# Installs what Kiln needs to build and test: Debian packages with apt-get (Debian's nodejs
# and npm too when node or npm is missing; a node already installed is kept, whatever its
# origin), and the node packages of the end-to-end tests with npm ci. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PKGS="build-essential pkg-config clang libclang-rt-14-dev libevent-dev libjansson-dev
      libpcre2-dev libxxhash-dev libutf8proc-dev libcurl4-openssl-dev libssl-dev clang-format
      cppcheck prometheus debootstrap python3-numpy chromium qemu-user"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if [ -f tests/e2e/package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
fi
