#!/usr/bin/env bash
# Where a drain's time goes, on both sides: one `toolq worker` (side port on,
# default threads unless TOKIO_WORKER_THREADS is set) drains JOBS staged echo
# jobs from a throw-away redis-server, and this prints jobs/s, the worker's and
# Redis's CPU µs per job, jobs held in flight (sampled), Redis commands and
# their µs per job (INFO commandstats), the Redis memory of one stored result
# (MEMORY USAGE), how busy the whole host's cores were (/proc/stat), the
# worker's peak RSS and what it is made of, and the same server's
# `SET key value EX 60 -P 16` ceiling for the ratio.
#
# usage: scripts/bench-breakdown.sh [BIN] [JOBS] [WORKERS] [RESULT_TTL_S]
#   BIN default the one scripts/release-build.sh builds, JOBS 300000,
#   WORKERS 1 (processes), RESULT_TTL_S empty = the default (1 h), 0 = fire and forget.
set -euo pipefail
BIN=$(realpath "${1:-$(bash "$(dirname "${BASH_SOURCE[0]}")/release-build.sh")}"); N=${2:-300000}; W=${3:-1}; TTL=${4:-}
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(port)
D=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
redis-server --port "$PORT" --save '' --appendonly no --dir "$D" --daemonize yes \
  --logfile "$D/r.log" --pidfile "$D/r.pid"
R="redis-cli -p $PORT"
until $R ping >/dev/null 2>&1; do sleep 0.1; done
RPID=$(cat "$D/r.pid")
python3 - "$N" "$TTL" <<'PY' | $R --pipe >/dev/null
import sys, uuid, time
n, ttl = int(sys.argv[1]), sys.argv[2]
now = int(time.time() * 1000)
extra = ',"result_ttl_s":%s' % ttl if ttl != '' else ''
k = 'toolq:{default}:staging'
for i in range(n):
    p = '{"id":"%s","tool":"echo","args":{"i":%d},"enqueued_at":%d%s}' % (uuid.uuid7() if hasattr(uuid, 'uuid7') else uuid.uuid4(), i, now, extra)
    sys.stdout.write('*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' % (len(k), k, len(p), p))
PY
export TOOLQ_REDIS_URL=redis://127.0.0.1:$PORT TOOLQ_CONCURRENCY=50 RUST_LOG=${RUST_LOG:-info}
for i in $(seq 1 "$W"); do
  TOOLQ_HTTP_ADDR=127.0.0.1:$(port) "$BIN" worker >"$D/w$i.log" 2>&1 &
  PIDS+=($!)
done
until [ "$($R zcard 'toolq:{default}:workers')" = "$W" ]; do sleep 0.1; done
sleep 1
ACTIVE=$($R zrange 'toolq:{default}:workers' 0 -1 | sed 's/^/toolq:{default}:active:/')
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wcpu() { local s=0; for p in "${PIDS[@]}"; do s=$((s + $(cpu "$p"))); done; echo $s; }
$R config resetstat >/dev/null
mem0=$($R info memory | awk -F: '/^used_memory:/{print $2+0}')
w0=$(wcpu); r0=$(cpu "$RPID"); h0=$(head -1 /proc/stat); t0=$(date +%s.%N)
$R rename 'toolq:{default}:staging' 'toolq:{default}:pending' >/dev/null
samples=()
while :; do
  done_n=$($R hget 'toolq:{default}:stats' succeeded); done_n=${done_n:-0}
  [ "$done_n" -ge "$N" ] && break
  held=0
  for k in $ACTIVE; do
    h=$($R hget "$k" jobs); held=$((held + ${h:-0}))
  done
  samples+=("$held")
  sleep 0.05
done
t1=$(date +%s.%N); w1=$(wcpu); r1=$(cpu "$RPID"); h1=$(head -1 /proc/stat)
hz=$(getconf CLK_TCK)
stats=$($R info commandstats)
mem1=$($R info memory | awk -F: '/^used_memory:/{print $2+0}')
key=$($R --scan --pattern 'toolq:{default}:result:*' | head -1 || true)
python3 - "$N" "$t0" "$t1" "$w0" "$w1" "$r0" "$r1" "$hz" "$mem0" "$mem1" "$W" "${samples[*]:-0}" "$h0" "$h1" <<PY
import sys, statistics
n, t0, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
w0, w1, r0, r1, hz = map(float, sys.argv[4:9])
mem0, mem1, workers = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
held = [int(x) for x in sys.argv[12].split()] or [0]
el = t1 - t0
print(f"drain {n/el:,.0f} jobs/s ({n} jobs, {workers} worker(s), {el:.2f} s)")
print(f"cpu   worker {(w1-w0)/hz/el:.2f} cores = {(w1-w0)/hz/n*1e6:.2f} us/job; redis {(r1-r0)/hz/el:.2f} cores = {(r1-r0)/hz/n*1e6:.2f} us/job")
# The whole host over the drain (/proc/stat): on a small machine shared with
# Redis, whether the cores themselves are what is spent; softirq is mostly
# loopback TCP, which neither process's own CPU time counts.
h0, h1 = ([int(x) for x in a.split()[1:9]] for a in sys.argv[13:15])
d = [b - a for a, b in zip(h0, h1)]
cores = sum(d) / hz / el
busy = dict(zip(['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'], (x / hz / el for x in d)))
print(f"host  {cores:.1f} cores: user {busy['user'] + busy['nice']:.2f}, system {busy['system']:.2f}, softirq {busy['softirq'] + busy['irq']:.2f}, steal {busy['steal']:.2f}, idle {busy['idle'] + busy['iowait']:.2f}")
print(f"held  jobs in the active hashes (sampled {len(held)}x): median {statistics.median(held):.0f}, max {max(held)}")
print(f"mem   used_memory growth {(mem1-mem0)/n:.0f} bytes/job")
stats = """$stats"""
print("cmd   calls/job  usec/job  usec/call")
for line in stats.splitlines():
    if not line.startswith('cmdstat_'): continue
    name, rest = line[8:].split(':', 1)
    f = dict(kv.split('=') for kv in rest.split(','))
    calls, usec = int(f['calls']), float(f['usec'])
    if calls < n / 1000: continue
    print(f"      {name:<10} {calls/n:8.4f} {usec/n:8.2f} {usec/calls:9.2f}")
PY
echo "result MEMORY USAGE $($R memory usage "$key") bytes; $(($($R strlen "$key"))) bytes of JSON: $($R get "$key")"
for p in "${PIDS[@]}"; do
  echo "rss   worker $p: $(grep VmHWM /proc/$p/status | tr -s ' ') peak; now: $(grep -E '^(Rss|Anonymous)' /proc/$p/smaps_rollup | tr -s ' ' | tr '\n' ' ')"
  echo "      threads $(ls /proc/$p/task | wc -l); largest mappings (kB resident, by file or kind):"
  awk '/^[0-9a-f]+-[0-9a-f]+ /{name = NF >= 6 ? $6 : "[anon]"} /^Rss:/{rss[name] += $2}
       END{for (n in rss) if (rss[n] >= 256) printf "        %6d %s\n", rss[n], n}' "/proc/$p/smaps" | sort -rn
done
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
$R flushall >/dev/null
ceil=$(redis-benchmark -h 127.0.0.1 -p "$PORT" --csv -c 50 -n 1000000 -P 16 set key value EX 60 | awk -F, 'NR==2{gsub(/"/,"",$2); print $2}')
python3 -c "print(f'ceil  SET key value EX 60 -P 16: {float($ceil):,.0f} ops/s; drain/ceiling = {$N/($t1-$t0)/float($ceil):.2f}x')"
