#!/usr/bin/env bash
# MCP tool calls per second: the fixture server's `add` called directly by
# an rmcp client, then through toolq with 1, 2 and 4 server processes, in
# the same run (README "Performance").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
fixtures="$(bash scripts/install-mcp-fixtures.sh)"
"$(bash scripts/release-build.sh)" bench --jobs "${JOBS:-20000}" --concurrency 50 \
    --mcp "$fixtures/venv/bin/python tests/fixtures/mcp_server.py" \
    --mcp-tool add --mcp-args '{"a": 1, "b": 2}'
