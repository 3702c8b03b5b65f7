#!/usr/bin/env bash
# Instructions the worker spends per job, counted by callgrind: repeatable
# for the same binary whatever else the machine does, so it decides small
# job-path changes that timed runs on a noisy machine cannot.
#
# usage: scripts/bench-callgrind.sh [BIN] [JOBS]   (BIN: a release build,
# default the one scripts/release-build.sh builds; JOBS default 20000).
# Starts a throw-away redis-server, stages JOBS echo jobs (36-character
# ids) in a side list, starts `toolq worker` under callgrind, zeroes the
# counters once it is registered, renames the staged list into pending, and
# dumps the counters when the stats hash counts every job as succeeded. Compare builds by
# running each several times and taking medians.
# The worker logs at RUST_LOG (default info) in TOOLQ_LOG_FORMAT (default
# pretty): a worker's own defaults, so the count includes each job's tracing
# span, which every worker at its defaults pays. `RUST_LOG=warn
# TOOLQ_LOG_FORMAT=json` counts the job path without the span's formatting
# (the figures before 2026-12-03 were taken that way).
set -euo pipefail
command -v valgrind >/dev/null || { echo 'needs valgrind (apt-get install -y valgrind)' >&2; exit 2; }
BIN=$(realpath "${1:-$(bash "$(dirname "${BASH_SOURCE[0]}")/release-build.sh")}"); N=${2:-20000}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
D=$(mktemp -d)
trap 'redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
redis-server --port $PORT --save '' --appendonly no --dir $D --daemonize yes --logfile $D/r.log
sleep 0.5
R="redis-cli -p $PORT"
python3 - $N <<'PY' | $R --pipe >/dev/null
import sys, uuid
n=int(sys.argv[1])
for i in range(n):
    p='{"tool":"echo","args":{"n":%d},"id":"%s"}' % (i, uuid.uuid4())
    k='toolq:{default}:staging'
    sys.stdout.write('*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' % (len(k),k,len(p),p))
PY
export TOOLQ_REDIS_URL=redis://127.0.0.1:$PORT TOOLQ_HTTP_ADDR=127.0.0.1:$MPORT TOOLQ_CONCURRENCY=50 TOOLQ_LOG_FORMAT=${TOOLQ_LOG_FORMAT:-pretty} RUST_LOG=${RUST_LOG:-info}
cd $D; valgrind --tool=callgrind --callgrind-out-file=$D/cg.out $BIN worker > $D/w.log 2>&1 &
VP=$!
for i in $(seq 1 120); do $R exists 'toolq:{default}:workers' | grep -q 1 && break; sleep 1; done
sleep 3
callgrind_control -z $VP >/dev/null 2>&1
$R rename 'toolq:{default}:staging' 'toolq:{default}:pending' >/dev/null
until [ "$($R hget 'toolq:{default}:stats' succeeded)" = "$N" ]; do sleep 0.5; done
callgrind_control -d $VP >/dev/null 2>&1
sleep 1
kill -TERM $VP; wait $VP || true
f=$(ls -t $D/cg.out* | grep -v "cg.out$" | head -1)
ir=$(grep -m1 "^summary:\|^totals:" $f | awk '{print $2}')
echo "jobs=$N instructions=$ir per_job=$((ir / N)) RUST_LOG=$RUST_LOG TOOLQ_LOG_FORMAT=$TOOLQ_LOG_FORMAT"
