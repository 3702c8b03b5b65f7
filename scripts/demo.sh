#!/usr/bin/env bash
# The newcomer's first run: installs redis-server when missing, builds toolq
# and runs `toolq demo` (which uses the configured Redis or starts a
# throw-away redis-server when none answers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
exec cargo run --quiet -- demo "$@"
