#!/usr/bin/env python3
"""Redis's side of the job path, taken apart: runs the worker's own fetch.lua
and ack.lua (from src/queue/scripts) against a throw-away redis-server, K jobs
a call, and prints each script's Redis CPU per job (INFO commandstats), for the
scripts as they are and for two cut-down copies that show where the time goes:

  as shipped       fetch K jobs, then ack them with a result each (1 h TTL)
  ack: no SETEX    the same ack, with the result writes left out
  ack: args only   an ack that only counts the jobs: Redis's cost of taking
                   the call's KEYS and ARGV into Lua, and running the script
                   prelude

usage: python3 scripts/bench-lua.py [K] [ROUNDS]   (default 50 1000; needs
redis-server on PATH; no Python packages: it speaks RESP itself)

The cut-down copies are for measurement only: they settle nothing correctly.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, '..', 'src', 'queue', 'scripts')


class Resp:
    """The least of a Redis client: commands out, replies in."""

    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.f = self.s.makefile('rb')

    def send(self, *args):
        out = [b'*%d\r\n' % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
        self.s.sendall(b''.join(out))

    def read(self):
        line = self.f.readline()[:-2]
        kind, rest = line[:1], line[1:]
        if kind == b'+':
            return rest.decode()
        if kind == b'-':
            raise RuntimeError(rest.decode())
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if kind == b'*':
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError('unexpected reply %r' % line)

    def call(self, *args):
        self.send(*args)
        return self.read()


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def source(name):
    with open(os.path.join(SCRIPTS, name)) as f:
        return f.read()


def variants():
    fetch = source('fetch.lua')
    prelude = source('held.lua') + source('batch_callback.lua')
    ack = source('ack.lua')
    setex = "      redis.call('SETEX', KEYS[2 + i], ttl, ARGV[res + i])"
    start = 'local n = tonumber(ARGV[1])'
    assert setex in ack and start in ack, 'ack.lua changed: update bench-lua.py'
    return [
        ('as shipped', fetch, prelude + ack),
        ('ack: no SETEX', fetch, prelude + ack.replace(setex, '      local _ = KEYS[2 + i]')),
        ('ack: args only', fetch, prelude + ack.replace(
            start,
            "redis.call('HINCRBY', KEYS[2], 'succeeded', tonumber(ARGV[1]))\n"
            "do return {{}, {}} end\n" + start)),
    ]


def run(r, k, rounds, fetch, ack):
    r.call('FLUSHALL')
    q = '{bench-lua}'
    pending, active, workers, stats = (
        'toolq:%s:pending' % q, 'toolq:%s:active:w1' % q,
        'toolq:%s:workers' % q, 'toolq:%s:stats' % q)
    r.call('ZADD', workers, int(time.time() * 1000), 'w1')
    now = int(time.time() * 1000)
    n = k * rounds
    for i in range(n):
        r.send('LPUSH', pending, '{"id":"%s","tool":"echo","args":{"i":%d},"enqueued_at":%d}'
               % (uuid.uuid4(), i, now))
    for _ in range(n):
        r.read()
    fsha, asha = r.call('SCRIPT', 'LOAD', fetch), r.call('SCRIPT', 'LOAD', ack)
    result = ('{"tool":"echo","status":"succeeded","output":{"i":123456},"attempts":1,'
              '"enqueued_at":%d,"started_at":%d,"duration_ms":0.012345,"worker":"w1-0123456789ab"}'
              % (now, now))
    # Fetched with EVALSHA, acked with EVAL (cached by then, not compiled
    # again): commandstats then tells the two scripts apart.
    r.call('CONFIG', 'RESETSTAT')
    for b in range(rounds):
        out = r.call('EVALSHA', fsha, 3, pending, active, workers,
                     k, b, 'w1', 3, 1 << 20, 512, 256, 10 ** 9)
        ids = [p.split(b'"id":"')[1][:36].decode() for p in out]
        keys = [active, stats] + ['toolq:%s:result:%s' % (q, i) for i in ids]
        packed = b''.join(struct.pack('>HH', 1, i) for i in range(len(out)))
        args = [len(out), 3600, 1, b, packed] + [result] * len(out) + [0, 0, 0]
        r.call('EVAL', ack, len(keys), *keys, *args)
    stats_text = r.call('INFO', 'commandstats').decode()
    done = int(r.call('HGET', stats, 'succeeded') or 0)
    assert done == n, 'settled %d of %d jobs' % (done, n)
    usec = {}
    for line in stats_text.splitlines():
        if line.startswith('cmdstat_'):
            name, rest = line[8:].split(':', 1)
            fields = dict(kv.split('=') for kv in rest.split(','))
            usec[name] = float(fields['usec'])
    return usec.get('evalsha', 0) / n, usec.get('eval', 0) / n, usec.get('setex', 0) / n


def main():
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if not shutil.which('redis-server'):
        sys.exit('needs redis-server on PATH')
    port = free_port()
    d = tempfile.mkdtemp()
    server = subprocess.Popen(['redis-server', '--port', str(port), '--save', '',
                               '--appendonly', 'no', '--dir', d],
                              stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                r = Resp(port)
                r.call('PING')
                break
            except (OSError, RuntimeError):
                time.sleep(0.05)
        print('%d jobs a call, %d calls of each script; Redis CPU µs per job (commandstats)' % (k, rounds))
        print('%-16s %8s %8s %14s %8s' % ('', 'fetch', 'ack', 'of it SETEX', 'total'))
        for name, fetch, ack in variants():
            f, a, s = run(r, k, rounds, fetch, ack)
            print('%-16s %8.2f %8.2f %14.2f %8.2f' % (name, f, a, s, f + a))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
