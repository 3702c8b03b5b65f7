#!/usr/bin/env bash
# The HTTP gateway measured (README "Performance", "HTTP gateway"): a
# throw-away redis-server, one `toolq worker` and one `toolq serve`, then
#  1. POST /execute waiting for results at a fixed rate (open loop) beside
#     the same jobs through the Rust producer (`toolq bench --gateway`);
#  2. 202-mode enqueue throughput (`wait_ms: 0`) with oha, keep-alive;
#  3. in the same run, redis-benchmark LPUSH on the same server.
# Medians of RUNS runs. Knobs: RUNS (3), RATE (500), DURATION (20 s per path),
# OHA_DURATION (15 s), OHA_CONNECTIONS (50).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
RATE=${RATE:-500}
DURATION=${DURATION:-20}
OHA_DURATION=${OHA_DURATION:-15}
OHA_CONNECTIONS=${OHA_CONNECTIONS:-50}

bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null; then
    echo "installing oha (cargo install, a few minutes)" >&2
    cargo install oha --locked --quiet
fi
toolq=$(bash scripts/release-build.sh)

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
export TOOLQ_REDIS_URL="redis://127.0.0.1:$redis_port"

head -c 48 /dev/urandom | base64 >"$tmp/jwt_secret"
python3 - "$tmp/jwt_secret" >"$tmp/token" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 3600,
    "toolq": {"tools": ["*"], "queues": ["*"], "results": True}}).encode())
key = open(sys.argv[1], "rb").read().strip()
sig = b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
token=$(cat "$tmp/token")

"$toolq" worker --concurrency 50 --http-addr off 2>"$tmp/worker.log" &
pids+=($!)
worker_pid=$!
gateway_port=$(free_port)
gateway="http://127.0.0.1:$gateway_port"
TOOLQ_SERVE__JWT_SECRET_FILE="$tmp/jwt_secret" \
    "$toolq" serve --addr "127.0.0.1:$gateway_port" 2>"$tmp/gateway.log" &
pids+=($!)
gateway_pid=$!
for _ in $(seq 300); do
    if curl -fs "$gateway/tools" -H "authorization: Bearer $token" 2>/dev/null | grep -q calculator; then
        break
    fi
    sleep 0.1
done
curl -fs "$gateway/tools" -H "authorization: Bearer $token" | grep -q calculator ||
    { echo "the gateway never listed the worker's tools" >&2; cat "$tmp/gateway.log" >&2; exit 1; }

echo "toolq gateway bench — $(date -u +%F), $(nproc) cores, $(redis-server --version | grep -o 'v=[0-9.]*'), $(oha --version)"
echo "one worker (concurrency 50), one gateway, redis-server, load generators: all on this host"

# 1. Results through the gateway and through the producer at the same rate.
"$toolq" bench --gateway "$gateway" --token-file "$tmp/token" \
    --rate "$RATE" --seconds "$DURATION" --runs "$RUNS" --concurrency "$OHA_CONNECTIONS"

# 2. 202 mode: enqueue only, keep-alive connections.
cpu_seconds() { # user + system CPU seconds of a pid
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
oha_run() { # queue → "rps p50_ms p99_ms non202 gateway_us_per_request cores_gateway cores_redis cores_worker cores_oha"
    local queue=$1 before after
    before="$(cpu_seconds "$gateway_pid") $(cpu_seconds "$redis_pid") $(cpu_seconds "$worker_pid")"
    local TIMEFORMAT='%U %S'
    { time oha -z "${OHA_DURATION}s" -w -c "$OHA_CONNECTIONS" --no-tui --output-format json -m POST \
        -H "authorization: Bearer $token" -H 'content-type: application/json' \
        -d "{\"tool\":\"clock\",\"args\":{},\"queue\":\"$queue\",\"wait_ms\":0}" \
        "$gateway/execute" >"$tmp/oha.json" 2>"$tmp/oha.err"; } 2>"$tmp/oha.time"
    after="$(cpu_seconds "$gateway_pid") $(cpu_seconds "$redis_pid") $(cpu_seconds "$worker_pid")"
    python3 - "$tmp/oha.json" "$before" "$after" "$(cat "$tmp/oha.time")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
ok = codes.get("202", 0)
other = sum(codes.values()) - ok + sum(r.get("errorDistribution", {}).values())
p = r["latencyPercentiles"]
wall = r["summary"]["total"]
gw, redis, worker = (b - a for a, b in zip(map(float, sys.argv[2].split()), map(float, sys.argv[3].split())))
oha = sum(map(float, sys.argv[4].split()))
print(f'{r["summary"]["requestsPerSec"]:.0f} {p["p50"] * 1000:.2f} {p["p99"] * 1000:.2f} {other}'
      f' {gw / max(ok + other, 1) * 1e6:.0f} {gw / wall:.2f} {redis / wall:.2f} {worker / wall:.2f} {oha / wall:.2f}')
PY
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "202      oha -z ${OHA_DURATION}s -w -c $OHA_CONNECTIONS, POST /execute {\"tool\":\"clock\",\"args\":{},\"queue\":Q,\"wait_ms\":0}, medians of $RUNS runs"
printf '         %-44s %8s %7s %7s %7s %8s   %-24s %s\n' queue 'req/s' 'p50 ms' 'p99 ms' non-202 'gw CPU' 'cores gw/redis/wkr/oha' 'runs req/s'
for queue in bench-202 default; do
    : >"$tmp/runs"
    for _ in $(seq "$RUNS"); do
        oha_run "$queue" >>"$tmp/runs"
        redis-cli -p "$redis_port" del "toolq:{bench-202}:pending" >/dev/null
    done
    case $queue in
        bench-202) label="bench-202 (no worker serves it: enqueue only)" ;;
        *) label="default (the worker runs the jobs meanwhile)" ;;
    esac
    col() { cut -d' ' -f"$1" "$tmp/runs" | median; }
    printf '         %-44s %8.0f %7.2f %7.2f %7d %5.0f µs   %-24s %s\n' "$label" \
        "$(col 1)" "$(col 2)" "$(col 3)" "$(awk '{ n += $4 } END { print n }' "$tmp/runs")" "$(col 5)" \
        "$(col 6)/$(col 7)/$(col 8)/$(col 9)" "$(cut -d' ' -f1 "$tmp/runs" | paste -sd, | sed 's/,/, /g')"
done
echo "         non-202: all runs; gw CPU: the gateway's CPU time per request; cores: CPU time / wall time of the"
echo "         gateway, redis-server, worker and oha itself (all medians): the load generator shares the cores"

# 3. What Redis itself does on this machine, same server, same run.
for pipeline in 1 16; do
    rps=$(redis-benchmark -p "$redis_port" -c 50 -n 1000000 -P "$pipeline" -t lpush --csv |
        awk -F'"' '$2 == "LPUSH" { print $4 }')
    printf 'ceiling  redis-benchmark -t lpush -c 50 -n 1000000 -P %-2s %10.0f ops/s\n' "$pipeline" "$rps"
done

# Anything the processes complained about meanwhile.
if grep -hE ' (WARN|ERROR) ' "$tmp/gateway.log" "$tmp/worker.log" >"$tmp/complaints"; then
    echo "logs     $(wc -l <"$tmp/complaints") warnings/errors from the gateway and worker, the first ones:"
    head -5 "$tmp/complaints" | sed 's/^/         /'
else
    echo "logs     no warnings or errors from the gateway and worker"
fi
