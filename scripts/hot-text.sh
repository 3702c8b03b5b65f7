#!/usr/bin/env bash
# Records link/hot-text.txt: the functions a worker runs, hottest first, which
# build.rs has the linker lay out together at the front of a release binary
# (a worker then keeps about 3 MB of code resident instead of 10-14 MB).
#
# usage: bash scripts/hot-text.sh [JOBS]   (needs valgrind; about 2 minutes
#   after the release build; JOBS default 20000; TOOLQ=path skips the build)
#
# Starts a throw-away redis-server, stages JOBS echo jobs and a few of every
# other outcome (calculator results, a retry that then succeeds, a permanent
# failure, an unknown tool, malformed JSON), runs `toolq worker` under
# callgrind from its start (configuration file, connections, side port) through
# the drain, two scrapes of the side port, to its graceful stop, and lists
# every function of the binary that ran, by instructions spent in it; then
# the functions a second start, with flags instead of the environment, ran
# besides.
#
# Symbol names carry a hash of the rustc version and of the dependencies, so
# record the list again after a toolchain or Cargo.lock change (a release
# build warns of another rustc, ops/check.sh fails on another Cargo.lock).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo 'needs valgrind (apt-get install -y valgrind)' >&2; exit 2; }
N=${1:-20000}
if [[ -z "${TOOLQ:-}" ]]; then
    cargo build --release --quiet
    TOOLQ=target/release/toolq
fi
BIN=$(realpath "$TOOLQ")
OUT=$PWD/link/hot-text.txt
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(port); MPORT=$(port)
D=$(mktemp -d)
trap 'redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || true; rm -rf "$D"' EXIT
redis-server --port "$PORT" --save '' --appendonly no --dir "$D" --daemonize yes --logfile "$D/r.log"
R="redis-cli -p $PORT"
until $R ping >/dev/null 2>&1; do sleep 0.1; done

# Staged aside, released at once when the worker is up. Every 100th job is
# one of the other outcomes; SUCCEED counts the jobs that end succeeded.
SUCCEED=$(python3 - "$N" <<'PY' 3>&1 1>"$D/jobs.resp"
import sys, uuid, os
n = int(sys.argv[1])
others = [
    '{"tool":"calculator","args":{"expression":"sqrt(16) + 2^10 - max(1, 7)"}%s}',
    '{"tool":"fail","args":{"times":1},"max_attempts":3%s}',
    '{"tool":"fail","args":{"permanent":true}%s}',
    '{"tool":"no-such-tool","args":{}%s}',
    '{"tool":"calculator","args":{"expression":"1/0"}%s}',
    '{"tool":"echo","args":',
]
ok = 0
k = 'toolq:{default}:staging'
for i in range(n):
    if i % 100 == 99:
        t = others[(i // 100) % len(others)]
        p = t % (',"id":"%s"' % uuid.uuid4()) if '%s' in t else t
        ok += t.startswith('{"tool":"calculator","args":{"expression":"sqrt') or '"times":1' in t
    else:
        p = '{"tool":"echo","args":{"n":%d},"id":"%s"}' % (i, uuid.uuid4())
        ok += 1
    sys.stdout.write('*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n' % (len(k), k, len(p.encode()), p))
os.write(3, b'%d\n' % ok)
PY
)
$R --pipe <"$D/jobs.resp" >/dev/null

# The worker starts as the container image runs it, beside config/toolq.toml,
# so the code that reads the file is laid out with the rest.
mkdir -p "$D/config" && cp config/toolq.toml "$D/config/"
export TOOLQ_REDIS_URL=redis://127.0.0.1:$PORT TOOLQ_HTTP_ADDR=127.0.0.1:$MPORT TOOLQ_CONCURRENCY=50 \
    TOOLQ_BACKOFF_BASE_MS=100
(cd "$D" && exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$D/cg.out" \
    "$BIN" worker >"$D/w.log" 2>&1) &
VP=$!
for _ in $(seq 1 240); do $R exists 'toolq:{default}:workers' | grep -q 1 && break; sleep 0.5; done
for path in healthz readyz health metrics; do curl -s "http://127.0.0.1:$MPORT/$path" >/dev/null || true; done
$R rename 'toolq:{default}:staging' 'toolq:{default}:pending' >/dev/null
for _ in $(seq 1 1200); do
    [[ "$($R hget 'toolq:{default}:stats' succeeded)" == "$SUCCEED" ]] && break
    sleep 0.5
done
[[ "$($R hget 'toolq:{default}:stats' succeeded)" == "$SUCCEED" ]] \
    || { echo "the worker did not finish the jobs in 10 minutes; its log: $D/w.log" >&2; cat "$D/w.log" >&2; exit 1; }
curl -s "http://127.0.0.1:$MPORT/metrics" >/dev/null
kill -TERM "$VP"; wait "$VP" || true

# A second start, with the settings as flags (`toolq bench` starts its
# workers so, as do many command lines): the code that parses them is
# listed after everything above, so the layout of a worker configured by
# its environment stays as it is.
(cd "$D" && exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$D/cg-flags.out" \
    "$BIN" worker --queue flags --concurrency 50 --http-addr "127.0.0.1:$MPORT" >"$D/w2.log" 2>&1) &
VP=$!
for _ in $(seq 1 240); do $R exists 'toolq:{flags}:workers' | grep -q 1 && break; sleep 0.5; done
curl -s "http://127.0.0.1:$MPORT/metrics" >/dev/null || true
kill -TERM "$VP"; wait "$VP" || true

python3 - "$D/cg.out" "$BIN" "$OUT" "$(rustc -V)" "$D/cg-flags.out" <<'PY'
import hashlib, re, subprocess, sys
src, binpath, out, rustc, flags_src = sys.argv[1:6]


def self_costs(src):
    """Self cost (instructions) of each function in the toolq binary. Cost
    lines follow fn=; the line after calls= is a call's inclusive cost."""
    names, objs, cost = {}, {}, {}
    ob = fn = None
    skip = False
    pat = re.compile(r'(c?ob|c?fn)=\((\d+)\)(?: (.*))?')
    for line in open(src, errors='replace'):
        line = line.rstrip('\n')
        m = pat.match(line)
        if m:
            kind, i, name = m.groups()
            table = objs if kind.endswith('ob') else names
            if name:
                table[i] = name
            if kind == 'ob':
                ob = objs[i]
            elif kind == 'fn':
                fn = names[i] if ob == binpath else None
            continue
        if line.startswith('calls='):
            skip = True
        elif line[:1].isdigit() or line[:1] in '+-*':
            if not skip and fn:
                parts = line.split()
                if len(parts) > 1:
                    # callgrind marks recursion levels as name'2
                    f = re.sub(r"'\d+$", '', fn)
                    cost[f] = cost.get(f, 0) + int(parts[1])
            skip = False
    return cost


nm = subprocess.run(['nm', '--defined-only', binpath], capture_output=True, text=True, check=True).stdout
text = {l.split()[2] for l in nm.splitlines() if len(l.split()) == 3 and l.split()[1] in 'tTwW'}
cost = self_costs(src)
order = sorted((f for f in cost if f in text), key=lambda f: -cost[f])
listed = set(order)
flags = self_costs(flags_src)
order += sorted((f for f in flags if f in text and f not in listed), key=lambda f: -flags[f])
lock = hashlib.sha256(open('Cargo.lock', 'rb').read()).hexdigest()
with open(out, 'w') as f:
    f.write('# Functions a toolq worker runs, hottest first: build.rs has the linker\n')
    f.write('# put them together (lld --symbol-ordering-file). Recorded by\n')
    f.write('# scripts/hot-text.sh; record it again when a release build warns.\n')
    f.write('# rustc: %s\n' % rustc)
    f.write('# Cargo.lock sha256: %s\n' % lock)
    f.write('\n'.join(order) + '\n')
print('%d functions listed in %s (%d of them run only to read flags)' % (len(order), out, len(order) - len(listed)))
PY
