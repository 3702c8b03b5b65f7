#!/usr/bin/env bash
# Runs the whole test suite: installs redis-server, faketime, headless
# Chromium and the MCP test servers when missing, then the
# Rust tests (each starts its own redis-server on a free port) and the
# deployment-file checks in ops/check.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
# Headless Chromium and its WebDriver for the console tests (tests/console.rs),
# from Debian's packages, only when missing.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    echo "installing chromium and chromium-driver (Debian packages)" >&2
    sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
# Real MCP servers for tests/mcp.rs: the Python SDK and server-everything.
TOOLQ_MCP_FIXTURES="$(bash scripts/install-mcp-fixtures.sh)"
export TOOLQ_MCP_FIXTURES
bash ops/check.sh
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast --profile ci --features test-tools
else
    cargo test --no-fail-fast --features test-tools
fi
