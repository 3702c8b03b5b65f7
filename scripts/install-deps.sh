#!/usr/bin/env bash
# Installs what toolq's demo and tests need on a fresh Debian machine, only
# when missing: redis-server (and redis-tools for redis-cli/redis-benchmark),
# and faketime (libfaketime, which tests/pressure.rs preloads to shift one
# worker's clock by hours).
set -euo pipefail

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "installing redis-server (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi

if ! command -v faketime >/dev/null; then
    echo "installing faketime (Debian package)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
fi
