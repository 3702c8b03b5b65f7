#!/usr/bin/env bash
# What an idle fleet costs Redis: starts FLEET idle `toolq worker` processes
# (default 25 50 100 200, one tokio thread each) against one throw-away
# redis-server, and prints Redis commands/s and Redis CPU over WINDOW seconds
# (default 10), with the cost per worker and the busiest commands
# (`INFO commandstats`), and the time from a kill -9 of the worker holding
# a job until another holds it. Then one worker serving QUEUES queues
# (default 50), the same way, and push -> finished latency, against one
# worker serving one queue. A benchmark, not a test: it prints figures, asserts nothing.
#
#   bash scripts/bench-fleet.sh                      # builds the release binary first
#   TOOLQ=target/debug/toolq FLEET="25 50" bash scripts/bench-fleet.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FLEET=${FLEET-25 50 100 200}
WINDOW=${WINDOW:-10}
QUEUES=${QUEUES:-50}
SHARDS=${SHARDS:-8}
if [ -z "${TOOLQ:-}" ]; then
    TOOLQ=$(bash scripts/release-build.sh)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --maxclients 20000 --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
redis_pid=$(cat "$dir/redis.pid")
url="redis://127.0.0.1:$port"
hz=$(getconf CLK_TCK)

# utime + stime of redis-server, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$redis_pid/stat"; }
total_commands() { redis-cli -p "$port" info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'; }

# start N QUEUE-ARGS...: N idle workers serving the queues given.
start() {
    local n=$1; shift
    for _ in $(seq "$n"); do
        TOKIO_WORKER_THREADS=1 NO_COLOR=1 RUST_LOG=warn "$TOOLQ" --redis-url "$url" worker \
            --http-addr off --concurrency 10 "$@" >>"$dir/workers.log" 2>&1 &
        pids+=($!)
    done
}

# wait_registered N QUEUE: until N workers beat on QUEUE.
wait_registered() {
    local n=$1 key="toolq:{$2}:workers"
    for _ in $(seq 600); do
        [ "$(redis-cli -p "$port" zcard "$key")" -ge "$n" ] && return 0
        sleep 0.1
    done
    echo "only $(redis-cli -p "$port" zcard "$key") of $n workers registered" >&2
    return 1
}

stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    redis-cli -p "$port" flushall >/dev/null
}

# holder: the active hash key of the worker holding a job, if any.
holder() {
    redis-cli -p "$port" --scan --pattern 'toolq:{default}:active:*' | while read -r k; do
        if [ "$(redis-cli -p "$port" hget "$k" jobs)" -gt 0 ] 2>/dev/null; then echo "$k"; fi
    done | head -1
}

# recovery: kill -9 the worker holding a job; ms until another holds it.
recovery() {
    redis-cli -p "$port" lpush 'toolq:{default}:pending' \
        '{"tool":"sleep","args":{"ms":30000},"id":"probe"}' >/dev/null
    local key="" k2="" id pid t0 t1 tries=0
    until [ -n "$key" ]; do
        key=$(holder)
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ]; then echo "    no worker took the probe job"; return; fi
    done
    id=${key#toolq:\{default\}:active:}
    pid=$(redis-cli -p "$port" get "toolq:worker:$id" | grep -o '"pid":[0-9]*' | cut -d: -f2)
    kill -9 "$pid"
    t0=$(date +%s%N)
    wait "$pid" 2>/dev/null || true
    until [ -n "$k2" ] && [ "$k2" != "$key" ]; do
        k2=$(holder)
        if [ $(( $(date +%s%N) - t0 )) -gt 60000000000 ]; then echo "    not recovered within 60 s"; return; fi
    done
    t1=$(date +%s%N)
    echo "    kill -9 of the worker holding a job -> held by another: $(( (t1 - t0) / 1000000 )) ms"
}

# latency QUEUES...: 200 `clock` jobs pushed one at a time, spread over the
# queues; p50 and p90 of push -> finished (the batch notification), in ms.
latency() {
    python3 - "$port" "$@" <<'PY'
import socket, sys, time
port, queues = int(sys.argv[1]), sys.argv[2:]
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def cmd(*args):
    s.sendall(b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args)]))
    line = f.readline()
    if line[:1] == b"*":
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:]); f.read(n + 2)
    elif line[:1] == b"$" and int(line[1:]) >= 0:
        f.read(int(line[1:]) + 2)
took = []
for i in range(200):
    q = queues[(i * 17) % len(queues)]
    job = '{"tool":"clock","args":{},"id":"lat%d","batch":"lat"}' % i
    t = time.perf_counter()
    cmd("LPUSH", "toolq:{%s}:pending" % q, job)
    cmd("BLPOP", "toolq:{%s}:batch:lat" % q, "10")
    took.append((time.perf_counter() - t) * 1000)
took.sort()
print("    push -> finished over %d queue(s)/shard(s): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms" % (len(queues), took[100], took[180], took[198], took[-1]))
PY
}

# measure LABEL N: prints one row, then the busiest commands.
measure() {
    local label=$1 n=$2
    sleep 3   # past start-up: registration, first rounds
    redis-cli -p "$port" config resetstat >/dev/null
    local c0 t0 s0 c1 t1 s1
    c0=$(total_commands); t0=$(ticks); s0=$(date +%s.%N)
    sleep "$WINDOW"
    c1=$(total_commands); t1=$(ticks); s1=$(date +%s.%N)
    awk -v l="$label" -v n="$n" -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v s0="$s0" -v s1="$s1" -v hz="$hz" \
        'BEGIN { s = s1 - s0; r = c / s; printf "%-22s %10.0f %12.1f %14.1f\n", l, r, 100 * t / hz / s, r / n }'
    redis-cli -p "$port" info commandstats | tr -d '\r' | grep '^cmdstat_' |
        sed -E 's/^cmdstat_([^:]+):calls=([0-9]+).*/\2 \1/' | sort -rn | head -6 |
        awk -v s="$WINDOW" '{ printf "    %-16s %8.0f/s\n", $2, $1 / s }'
}

echo "toolq idle fleet against one redis-server ($(redis-server --version | grep -o 'v=[0-9.]*')), $(nproc) cores, ${WINDOW} s windows"
printf '%-22s %10s %12s %14s\n' "idle workers" "commands/s" "Redis CPU %" "commands/s/worker"
for n in $FLEET; do
    start "$n" --queue default
    wait_registered "$n" default
    measure "$n" "$n"
    recovery
    stop_all
done

queues=()
for i in $(seq "$QUEUES"); do queues+=(--queue "q$i"); done
start 1 "${queues[@]}"
wait_registered 1 "q$QUEUES"
measure "1 worker, $QUEUES queues" 1
names=()
for i in $(seq "$QUEUES"); do names+=("q$i"); done
latency "${names[@]}"
stop_all
start 1 --queue q1
wait_registered 1 q1
measure "1 worker, 1 queue" 1
latency q1
stop_all

# One queue of SHARDS shards: shard k > 0's keys carry the tag {s#k}.
redis-cli -p "$port" hset 'toolq:{s}:shards' count "$SHARDS" serve "$SHARDS" max "$SHARDS" >/dev/null
start 1 --queue s
wait_registered 1 "s#$((SHARDS - 1))"
measure "1 worker, 1 queue, $SHARDS shards" 1
tags=(s)
for k in $(seq $((SHARDS - 1))); do tags+=("s#$k"); done
latency "${tags[@]}"
stop_all
