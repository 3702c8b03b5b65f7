#!/usr/bin/env bash
# Soak test: scripts/soak.sh [DURATION] [more scripts/soak.py options]
# DURATION like 1h (default), 5m or 300. Builds the release binary (unless
# TOOLQ_SOAK_BIN names one), installs redis-server when missing, then runs
# scripts/soak.py (3 workers, a fixed-rate producer, worker kills, one Redis
# restart; fails on a lost job or on memory that keeps growing once warm).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration="${1:-1h}"
shift || true
bash scripts/install-deps.sh
bin="${TOOLQ_SOAK_BIN:-$(bash scripts/release-build.sh)}"
exec python3 scripts/soak.py --duration "$duration" --bin "$bin" "$@"
