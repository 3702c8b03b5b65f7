#!/usr/bin/env bash
# Bulk enqueue rate of `toolq submit` for N jobs (default 100,000; no worker
# running), RUNS times (default 3), next to `redis-benchmark -t lpush -P 16`
# on the same throw-away redis-server. A benchmark, not a test: it prints
# figures and asserts nothing.
#
#   bash scripts/bench-submit.sh            # N=100000 RUNS=3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${N:-100000}
RUNS=${RUNS:-3}

toolq=$(bash scripts/release-build.sh)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --save '' --appendonly no --daemonize yes \
    --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done

awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"tool\":\"calculator\",\"args\":{\"expression\":\"%d * 2\"},\"meta\":{\"i\":%d}}\n", i, i }' \
    > "$dir/jobs.jsonl"
echo "toolq submit of $N jobs ($(du -h "$dir/jobs.jsonl" | cut -f1) of JSON lines), $RUNS runs:"
walls=()
for run in $(seq "$RUNS"); do
    redis-cli -p "$port" flushall >/dev/null
    start=$(date +%s.%N)
    "$toolq" --redis-url "redis://127.0.0.1:$port" submit "$dir/jobs.jsonl" --queue bench \
        >/dev/null 2>"$dir/err"
    end=$(date +%s.%N)
    depth=$(redis-cli -p "$port" llen 'toolq:{bench}:pending')
    wall=$(echo "$N / ($end - $start)" | bc -l)
    walls+=("$wall")
    printf '  run %d: %.0f jobs/s for the whole command (read, validate, enqueue); %s; pending = %s\n' \
        "$run" "$wall" "$(grep -o 'in [0-9.]* s ([0-9]* jobs/s)' "$dir/err")" "$depth"
done
median=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
printf 'median: %.0f jobs/s (whole command)\n' "$median"
echo "redis-benchmark -t lpush -P 16 -n $N on the same server:"
redis-cli -p "$port" flushall >/dev/null
redis-benchmark -p "$port" -t lpush -P 16 -n "$N" -q
