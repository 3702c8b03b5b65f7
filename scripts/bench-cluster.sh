#!/usr/bin/env bash
# Drain on a Redis Cluster of 1 master against one of 3 masters: the same
# JOBS echo jobs (default 60000) staged on 3 queues, one queue's slot on each
# master (all on the one master in the first run), then handed to WORKERS
# `toolq worker` processes (default 2, concurrency 64, serving the 3 queues)
# at once with RENAME once every worker has registered. Prints the drain's
# jobs/s, the workers' CPU as µs per job, and, per master, its Redis CPU as
# µs per job (utime + stime of each process over the drain). No replicas: masters only. A
# benchmark, not a test: it prints figures, asserts nothing. RUNS (default
# 3) runs of each, then the medians.
#
#   bash scripts/bench-cluster.sh                   # builds the release binary first
#   TOOLQ=target/debug/toolq JOBS=6000 RUNS=1 bash scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS=${JOBS:-60000}
WORKERS=${WORKERS:-2}
RUNS=${RUNS:-3}
if [ -z "${TOOLQ:-}" ]; then
    TOOLQ=$(bash scripts/release-build.sh)
fi
hz=$(getconf CLK_TCK)
dir=$(mktemp -d)
ports=()
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# cluster M: M fresh masters sharing the 16384 slots evenly; sets `ports`.
cluster() {
    local m=$1 i lo hi
    for p in "${ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
    ports=()
    buses=()
    for i in $(seq 0 $((m - 1))); do
        local port; port=$(free_port)
        mkdir -p "$dir/$port"
        # The bus port defaults to port + 10000, which a free port above
        # 55535 does not have: it gets a free port of its own.
        local bus; bus=$(free_port)
        redis-server --port "$port" --cluster-enabled yes --cluster-port "$bus" \
            --save '' --appendonly no \
            --daemonize yes --dir "$dir/$port" --logfile "$dir/$port/redis.log" \
            --pidfile "$dir/$port/redis.pid"
        for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
        redis-cli -p "$port" ping >/dev/null 2>&1 || {
            echo "redis-server on port $port did not start:" >&2
            tail -3 "$dir/$port/redis.log" >&2
            exit 1
        }
        lo=$((16384 * i / m)); hi=$((16384 * (i + 1) / m - 1))
        redis-cli -p "$port" cluster addslotsrange "$lo" "$hi" >/dev/null
        ports+=("$port")
        buses+=("$bus")
    done
    for i in $(seq 1 $((m - 1))); do
        redis-cli -p "${ports[0]}" cluster meet 127.0.0.1 "${ports[$i]}" "${buses[$i]}" >/dev/null
    done
    for _ in $(seq 300); do
        local ok=1
        for p in "${ports[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
            [ "$(redis-cli -p "$p" cluster nodes | wc -l)" -eq "$m" ] || ok=0
        done
        [ $ok = 1 ] && return 0
        sleep 0.1
    done
    echo "the cluster of $m is not ok" >&2
    return 1
}

# master_of KEY: the port of the master serving KEY's slot (CLUSTER NODES).
master_of() {
    local slot; slot=$(redis-cli -p "${ports[0]}" cluster keyslot "$1")
    redis-cli -p "${ports[0]}" cluster nodes | awk -v slot="$slot" '
        $3 ~ /master/ {
            for (i = 9; i <= NF; i++) {
                n = split($i, r, "-"); lo = r[1]; hi = (n > 1 ? r[2] : r[1])
                if (slot + 0 >= lo + 0 && slot + 0 <= hi + 0) { split($2, a, "[:@]"); print a[2]; exit }
            }
        }'
}

# queues: one queue name per master (on the 1-master cluster, 3 there).
pick_queues() {
    local want=3 names=() seen=() n=0
    while [ ${#names[@]} -lt $want ]; do
        n=$((n + 1))
        local q="bench-$n" port; port=$(master_of "toolq:{bench-$n}:pending")
        if [ ${#ports[@]} -eq 1 ] || [[ ! " ${seen[*]} " =~ " $port " ]]; then
            names+=("$q"); seen+=("$port")
        fi
    done
    echo "${names[@]}"
}

# stage QUEUE N: N echo jobs on the queue's staging list (its own slot).
stage() {
    local q=$1 n=$2 port; port=$(master_of "toolq:{$q}:pending")
    python3 - "$q" "$n" <<'PY' | redis-cli -p "$port" --pipe >/dev/null
import sys
q, n = sys.argv[1], int(sys.argv[2])
key = "toolq:{%s}:staging" % q
out = sys.stdout.buffer
for i in range(0, n, 500):
    vals = ['{"tool":"echo","args":{"i":%d}}' % j for j in range(i, min(n, i + 500))]
    parts = [b"LPUSH", key.encode()] + [v.encode() for v in vals]
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))
PY
}

run() {
    local m=$1 queues q n per
    cluster "$m"
    queues=$(pick_queues)
    per=$((JOBS / 3))
    for q in $queues; do stage "$q" "$per"; done
    local nodes; nodes=$(printf '127.0.0.1:%s,' "${ports[@]}"); nodes=${nodes%,}
    local args=(); for q in $queues; do args+=(--queue "$q"); done
    for _ in $(seq "$WORKERS"); do
        NO_COLOR=1 RUST_LOG=warn TOOLQ_REDIS_CLUSTER_NODES="$nodes" "$TOOLQ" worker \
            --http-addr off --concurrency 64 "${args[@]}" >>"$dir/workers.log" 2>&1 &
        pids+=($!)
    done
    for q in $queues; do
        local port; port=$(master_of "toolq:{$q}:workers")
        until [ "$(redis-cli -p "$port" zcard "toolq:{$q}:workers")" -ge "$WORKERS" ]; do sleep 0.1; done
    done
    local before=() p wbefore=0
    for p in "${ports[@]}"; do before+=("$(ticks "$(cat "$dir/$p/redis.pid")")"); done
    for p in "${pids[@]}"; do wbefore=$((wbefore + $(ticks "$p"))); done
    local t0; t0=$(date +%s.%N)
    for q in $queues; do
        redis-cli -p "$(master_of "toolq:{$q}:pending")" rename "toolq:{$q}:staging" "toolq:{$q}:pending" >/dev/null
    done
    while :; do
        local done_=0
        for q in $queues; do
            n=$(redis-cli -p "$(master_of "toolq:{$q}:stats")" hget "toolq:{$q}:stats" succeeded)
            done_=$((done_ + ${n:-0}))
        done
        [ "$done_" -ge $((per * 3)) ] && break
        sleep 0.05
    done
    local t1; t1=$(date +%s.%N)
    local wafter=0
    for p in "${pids[@]}"; do wafter=$((wafter + $(ticks "$p"))); done
    local cpu=() i=0
    for p in "${ports[@]}"; do
        local after; after=$(ticks "$(cat "$dir/$p/redis.pid")")
        cpu+=("$(python3 -c "print(round(($after - ${before[$i]}) / $hz * 1e6 / $((per * 3)), 2))")")
        i=$((i + 1))
    done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=()
    python3 -c "print(round($((per * 3)) / ($t1 - $t0)), round(($wafter - $wbefore) / $hz * 1e6 / $((per * 3)), 1))" | tr '\n' ' '
    echo "${cpu[*]}"
}

echo "toolq cluster drain: $JOBS echo jobs on 3 queues, $WORKERS workers x 64, $RUNS runs; $(nproc) cores"
for m in 1 3; do
    rates=(); cpus=()
    for r in $(seq "$RUNS"); do
        line=$(run "$m")
        read -r rate wcpu cpu <<<"$line"
        echo "  $m master(s), run $r: $rate jobs/s; worker CPU $wcpu µs/job; Redis CPU µs/job per master: $cpu"
        rates+=("$rate"); cpus+=("$(python3 -c "print(sum(map(float, '$cpu'.split())))")")
    done
    median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
    echo "$m master(s): median $(median "${rates[@]}") jobs/s; Redis CPU µs/job, all masters together: median $(median "${cpus[@]}")"
done
