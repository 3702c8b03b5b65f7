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
# the functions a second start, with flags instead of the environment (and
# a RUST_LOG filter), ran besides. Last, when `perf` is installed, the same
# two runs natively, not under valgrind, with their page faults recorded:
# callgrind runs neither the code picked for CPU features valgrind does not
# emulate (the SHA extensions of sha2's digest) nor the slow paths of
# contended locks (it runs one thread at a time), and each such function
# left out of the list kept 128-256 KB of code resident (the kernel maps a
# whole large folio of the page cache around a fault). The functions whose
# code faulted and is not listed yet are appended, after those the last
# list found so and std's lock slow paths (contention comes and goes).
#
# Symbol names carry a hash of the rustc version and of the dependencies, so
# record the list again after a toolchain or Cargo.lock change (a release
# build warns of another rustc, ops/check.sh fails on another Cargo.lock).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo 'needs valgrind (apt-get install -y valgrind)' >&2; exit 2; }
N=${1:-20000}
if [[ -z "${TOOLQ:-}" ]]; then
    TOOLQ=$(bash scripts/release-build.sh)
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
import sys, uuid, os, time
n = int(sys.argv[1])
now = int(time.time() * 1000)  # as producers stamp their jobs
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
        p = t % (',"id":"%s","enqueued_at":%d' % (uuid.uuid4(), now)) if '%s' in t else t
        ok += t.startswith('{"tool":"calculator","args":{"expression":"sqrt') or '"times":1' in t
    else:
        p = '{"tool":"echo","args":{"n":%d},"id":"%s","enqueued_at":%d}' % (i, uuid.uuid4(), now)
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
# The worker is RUNNER's child under perf, RUNNER itself under valgrind.
stop_worker() { pkill -TERM -P "$VP" || kill -TERM "$VP"; wait "$VP" || true; }
drain() { # RUNNER...: start, scrape, drain the staged jobs, scrape, stop
    $R del 'toolq:{default}:workers' >/dev/null
    (cd "$D" && exec "$@" "$BIN" worker >>"$D/w.log" 2>&1) &
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
    stop_worker
}
drain valgrind --tool=callgrind --demangle=no --callgrind-out-file="$D/cg.out"

# A second start, with the settings as flags (`toolq bench` starts its
# workers so, as do many command lines): the code that parses them is
# listed after everything above, so the layout of a worker configured by
# its environment stays as it is.
flags_start() { # RUNNER...: a start with flags and a RUST_LOG filter, scraped once, stopped
    $R del 'toolq:{flags}:workers' >/dev/null
    (cd "$D" && RUST_LOG=info exec "$@" "$BIN" worker --queue flags --concurrency 50 \
        --http-addr "127.0.0.1:$MPORT" >>"$D/w2.log" 2>&1) &
    VP=$!
    for _ in $(seq 1 240); do $R exists 'toolq:{flags}:workers' | grep -q 1 && break; sleep 0.5; done
    curl -s "http://127.0.0.1:$MPORT/metrics" >/dev/null || true
    stop_worker
}
flags_start valgrind --tool=callgrind --demangle=no --callgrind-out-file="$D/cg-flags.out"

# Natively, the page faults recorded: the staged jobs again, then the start
# with flags.
FAULTS=()
if command -v perf >/dev/null; then
    $R del 'toolq:{default}:stats' >/dev/null
    $R --pipe <"$D/jobs.resp" >/dev/null
    record=(perf record -q -e page-faults -c 1 -d)
    drain "${record[@]}" -o "$D/pf.data"
    flags_start "${record[@]}" -o "$D/pf-flags.data"
    for f in pf pf-flags; do
        perf script -i "$D/$f.data" --show-mmap-events -F addr >"$D/$f.txt" 2>/dev/null
        FAULTS+=("$D/$f.txt")
    done
else
    echo 'perf not found: the list holds only what callgrind saw (apt-get install -y linux-perf)' >&2
fi

python3 - "$D/cg.out" "$BIN" "$OUT" "$(rustc -V)" "$D/cg-flags.out" "${FAULTS[@]}" <<'PY'
import bisect, hashlib, re, subprocess, sys
src, binpath, out, rustc, flags_src = sys.argv[1:6]
faults = sys.argv[6:]


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


def faulted(path, functions):
    """Functions of the binary whose code took a page fault, in the order of
    the faults. perf prints the mappings, then each fault's data address."""
    base, seen = None, []
    starts = [a for a, _, _ in functions]
    for line in open(path):
        if 'PERF_RECORD_MMAP' in line:
            m = re.search(r'\[(0x[0-9a-f]+)\(0x[0-9a-f]+\) @ 0 .*? (\S+)$', line.strip())
            if base is None and m and m.group(2) == binpath:
                base = int(m.group(1), 16)
            continue
        if base is None or not line.strip():
            continue
        addr = int(line.split()[0], 16) - base
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < functions[i][0] + functions[i][1] and functions[i][2] not in seen:
            seen.append(functions[i][2])
    return seen


nm = subprocess.run(['nm', '-S', '--defined-only', binpath], capture_output=True, text=True, check=True).stdout
# `i`: glibc's IFUNC resolvers, which a static binary runs at every start.
functions = sorted((int(f[0], 16), int(f[1], 16), f[3]) for f in map(str.split, nm.splitlines())
                   if len(f) == 4 and f[2] in 'tTwWi')
text = {name for _, _, name in functions}
cost = self_costs(src)
order = sorted((f for f in cost if f in text), key=lambda f: -cost[f])
listed = set(order)
flags = self_costs(flags_src)
order += sorted((f for f in flags if f in text and f not in listed), key=lambda f: -flags[f])
ran = len(order)
# A function found natively lies among the listed ones in the binary that
# recorded this run, so it faults no more: the last list's are kept.
NATIVE = '# seen only natively (perf page faults):'
try:
    last = open(out).read().split(NATIVE + '\n', 1)[1].split()
except (OSError, IndexError):
    last = []
order += [f for f in last if f in text and f not in order]
# The slow paths of std's and glibc's locks (malloc's arenas, condition
# variables) run only under contention, which callgrind (one thread at a
# time) never makes and a short native run may not.
order += [f for _, _, f in functions
          if ('3std3sys4sync' in f or re.match(r'__(lll_lock_w|futex_abstimed_wait)', f)) and f not in order]
for path in faults:
    order += [f for f in faulted(path, functions) if f not in order]
# glibc picks its string functions for the CPU (IFUNC), and valgrind's CPU
# has AVX2 but no AVX-512: a CPU with AVX-512 runs the EVEX or AVX-512
# siblings of the AVX2 ones callgrind saw.
avx = re.compile(r'_avx2?(?=_|$)')
for f in [f for f in order if f.startswith('__') and avx.search(f)]:
    order += [g for g in (avx.sub('_' + v, f, count=1) for v in ('evex', 'evex512', 'avx512'))
              if g in text and g not in order]
lock = hashlib.sha256(open('Cargo.lock', 'rb').read()).hexdigest()
with open(out, 'w') as f:
    f.write('# Functions a toolq worker runs, hottest first: build.rs has the linker\n')
    f.write('# put them together (lld --symbol-ordering-file). Recorded by\n')
    f.write('# scripts/hot-text.sh; record it again when a release build warns.\n')
    f.write('# rustc: %s\n' % rustc)
    f.write('# Cargo.lock sha256: %s\n' % lock)
    f.write('\n'.join(order[:ran]) + '\n')
    f.write(NATIVE + '\n')
    f.write(''.join(name + '\n' for name in order[ran:]))
print('%d functions listed in %s (%d of them run only to read flags, %d seen only natively)'
      % (len(order), out, ran - len(listed), len(order) - ran))
PY
