#!/usr/bin/env bash
# Installs the real MCP servers and Python tools the tests run, only when
# missing: the official Python SDK (`mcp`, from PyPI) in a virtualenv for
# the fixture server in tests/fixtures/mcp_server.py and the gateway's MCP
# client test, schemathesis (PyPI) in the same virtualenv for fuzzing the
# gateway, and the reference server `@modelcontextprotocol/server-everything`
# (from npm). Prints the folder they live in; tests find it through
# TOOLQ_MCP_FIXTURES.
set -euo pipefail

dir=${TOOLQ_MCP_FIXTURES:-$HOME/.cache/toolq-mcp-fixtures}
mcp_version=2.3.0
schemathesis_version=4.32.5
everything_version=2026.8.31
mkdir -p "$dir"

if ! "$dir/venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$mcp_version')" 2>/dev/null; then
    echo "installing mcp==$mcp_version (PyPI) into $dir/venv" >&2
    if ! python3 -m venv "$dir/venv" >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$dir/venv"
    fi
    "$dir/venv/bin/pip" install -q "mcp==$mcp_version" >&2
fi

# The gateway's API fuzzer, in the same virtualenv.
if ! "$dir/venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$schemathesis_version')" 2>/dev/null; then
    echo "installing schemathesis==$schemathesis_version (PyPI) into $dir/venv" >&2
    "$dir/venv/bin/pip" install -q "schemathesis==$schemathesis_version" >&2
fi

everything="$dir/node_modules/@modelcontextprotocol/server-everything"
if ! grep -q "\"version\": \"$everything_version\"" "$everything/package.json" 2>/dev/null; then
    if ! command -v npm >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "installing @modelcontextprotocol/server-everything@$everything_version (npm) into $dir" >&2
    (cd "$dir" && npm install --silent --no-audit --no-fund "@modelcontextprotocol/server-everything@$everything_version" >&2)
fi
echo "$dir"
