#!/usr/bin/env python3
"""Soak: toolq under steady mixed load for a long time, with faults.

Three `toolq worker` processes drain one queue fed by a producer at a fixed
rate: plain jobs, jobs that fail once and succeed on retry, jobs that die,
jobs scheduled a few seconds ahead and weather jobs (a fake OpenWeather on
127.0.0.1) that mostly hit the shared cache. Workers 2 and 3 are SIGKILLed
and restarted in turn every few minutes; Redis (append-only file) is
restarted once, early. Every sample prints each worker's RSS, Redis's
`used_memory` and the key count by kind.

Verdict: every job enqueued is accounted for (its id comes back on its
batch list, where a settled job, succeeded or dead, is announced), and
neither worker 1's RSS (never killed) nor Redis's memory grows in the
second half: a least-squares slope over the second half's samples, times
that half's length, must stay under the tolerance (5 % of the mean, at
least 2 MB). The dead set is capped at 1,000 entries and results live 60 s
so that the steady state is reached within the first half.

Usage: scripts/soak.py [--duration 1h] [--rate 200] [--bin target/release/toolq]
Exit 0 when it passes, 1 when it fails, 2 on bad usage.
"""

import argparse
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

QUEUE = "soak"
TAG = "toolq:{%s}:" % QUEUE
CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Lyon", "Cork", "Bern", "Nuuk"]
API_KEY = "soak-weather-key-0123456789"


def parse_duration(text):
    m = re.fullmatch(r"(\d+)(s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 300, 5m, 1h)")
    return int(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A minimal RESP client: enough for a soak, no dependency to install."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def connect(self):
        self.close()
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected reply {line!r}")

    def pipeline(self, commands):
        if self.sock is None:
            self.connect()
        try:
            self.sock.sendall(b"".join(self.encode(c) for c in commands))
            return [self._read() for _ in commands]
        except (OSError, ConnectionError):
            self.close()
            raise

    def call(self, *args):
        reply = self.pipeline([args])[0]
        if isinstance(reply, RuntimeError):
            raise reply
        return reply


class FakeWeather(http.server.BaseHTTPRequestHandler):
    """OpenWeather's current-weather answer for `q=<city>`."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        city = "Oslo"
        m = re.search(r"[?&]q=([^&]+)", self.path)
        if m:
            city = m.group(1)
        body = json.dumps({
            "coord": {"lon": 10.75, "lat": 59.91},
            "weather": [{"id": 501, "main": "Rain", "description": "moderate rain", "icon": "10d"}],
            "main": {"temp": 281.5, "feels_like": 280.1, "temp_min": 280.0, "temp_max": 283.0,
                     "pressure": 1015, "humidity": 64},
            "wind": {"speed": 3.1, "deg": 240},
            "clouds": {"all": 75},
            "dt": int(time.time()),
            "sys": {"country": "NO", "sunrise": 1661834187, "sunset": 1661882248},
            "timezone": 3600, "id": 3143244, "name": city, "cod": 200,
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Soak:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="toolq-soak-")
        self.port = free_port()
        self.redis_proc = None
        self.workers = [None, None, None]
        self.sent = set()
        self.settled = set()
        self.open_batches = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.events = []
        self.samples = []
        self.producer_errors = 0
        self.weather = None

    # ---- processes -------------------------------------------------------

    def start_redis(self):
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--logfile", os.path.join(self.dir, "redis.log")])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                Redis(self.port).call("PING")
                return
            except (OSError, ConnectionError, RuntimeError):
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def restart_redis(self):
        try:
            Redis(self.port).call("SHUTDOWN")
        except (OSError, ConnectionError, RuntimeError):
            pass
        self.redis_proc.wait(timeout=30)
        time.sleep(1)
        self.start_redis()

    def start_worker(self, i):
        env = dict(os.environ)
        env.update({
            "TOOLQ_REDIS_URL": f"redis://127.0.0.1:{self.port}",
            "TOOLQ_QUEUES": QUEUE,
            "TOOLQ_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "TOOLQ_CONCURRENCY": "20",
            "TOOLQ_BACKOFF_BASE_MS": "200",
            "TOOLQ_BACKOFF_MAX_MS": "2000",
            "TOOLQ_DEAD_MAX_JOBS": "1000",
            "TOOLQ_LOG_FORMAT": "json",
            "RUST_LOG": "warn",
            "OPENWEATHER_API_KEY": API_KEY,
            "TOOLQ_TOOLS__WEATHER__BASE_URL": f"http://127.0.0.1:{self.weather.server_port}",
        })
        for k in list(env):
            if k.startswith("TOOLQ_PROFILE"):
                del env[k]
        log = open(os.path.join(self.dir, f"worker{i + 1}.log"), "ab")
        self.workers[i] = subprocess.Popen([self.args.bin, "worker"], env=env, cwd=self.dir,
                                           stdout=log, stderr=log)

    def rss_mb(self, proc):
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    # ---- load ------------------------------------------------------------

    def job(self, n, batch, now_ms):
        jid = f"soak-{n}"
        r = random.random()
        if r < 0.70:
            tool, args, extra = "echo", {"n": n}, {}
        elif r < 0.80:
            tool, args, extra = "fail", {"times": 1}, {}
        elif r < 0.85:
            tool, args, extra = "fail", {"permanent": True}, {"max_attempts": 1}
        elif r < 0.95:
            tool, args, extra = "echo", {"n": n}, {"run_at": now_ms + 3000}
        else:
            tool, args, extra = "weather", {"city": random.choice(CITIES)}, {}
        doc = {"tool": tool, "args": args, "id": jid, "batch": batch, "result_ttl_s": 60}
        doc.update(extra)
        return jid, json.dumps(doc, separators=(",", ":"))

    def produce(self):
        """Fixed rate, in ticks of 100 ms, each tick one batch."""
        r = Redis(self.port)
        per_tick = self.args.rate / 10.0
        owed, n, tick = 0.0, 0, 0
        start = time.time()
        while not self.stop.is_set():
            tick += 1
            owed += per_tick
            count = int(owed)
            owed -= count
            if count:
                batch = f"b{tick}"
                now_ms = int(time.time() * 1000)
                jobs = [self.job(n + i, batch, now_ms) for i in range(count)]
                try:
                    replies = r.pipeline([("LPUSH", TAG + "pending", p) for _, p in jobs])
                    if any(isinstance(x, RuntimeError) for x in replies):
                        raise ConnectionError("LPUSH refused")
                    with self.lock:
                        self.sent.update(j for j, _ in jobs)
                        self.open_batches[batch] = count
                    n += count
                except (OSError, ConnectionError):
                    # Redis restarting: these were not pushed; the rate
                    # resumes when it is back.
                    self.producer_errors += 1
            delay = start + tick * 0.1 - time.time()
            if delay > 0:
                self.stop.wait(delay)

    def collect(self, until_stopped=True):
        """Drains the batch lists: each id there is a settled job."""
        r = Redis(self.port)
        while True:
            with self.lock:
                batches = list(self.open_batches)
            try:
                replies = r.pipeline([("LPOP", TAG + "batch:" + b, 1000) for b in batches]) \
                    if batches else []
                with self.lock:
                    for b, ids in zip(batches, replies):
                        if isinstance(ids, list):
                            self.settled.update(ids)
                            self.open_batches[b] -= len(ids)
                            if self.open_batches[b] <= 0:
                                del self.open_batches[b]
            except (OSError, ConnectionError):
                pass
            if until_stopped and self.stop.is_set():
                return
            if not until_stopped:
                return
            self.stop.wait(0.5)

    # ---- samples ---------------------------------------------------------

    def keys_by_kind(self, r):
        kinds, cursor = {}, "0"
        while True:
            cursor, keys = r.call("SCAN", cursor, "COUNT", 1000)
            for k in keys:
                m = re.match(r"toolq:\{[^}]*\}:([a-z_]+)", k)
                kind = m.group(1) if m else k.split(":")[1] if ":" in k else k
                kinds[kind] = kinds.get(kind, 0) + 1
            if cursor == "0":
                return kinds

    def sample(self, t):
        try:
            r = Redis(self.port)
            info = r.call("INFO", "memory")
            used = int(re.search(r"used_memory:(\d+)", info).group(1)) / 1e6
            kinds = self.keys_by_kind(r)
            r.close()
        except (OSError, ConnectionError, RuntimeError, AttributeError):
            return
        rss = [self.rss_mb(w) for w in self.workers]
        with self.lock:
            sent, settled = len(self.sent), len(self.settled)
        self.samples.append((t, rss[0], used))
        kinds_text = " ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
        print(f"t={t:6.0f}s rss_mb={rss[0]:.1f}/{rss[1]:.1f}/{rss[2]:.1f} "
              f"redis_used_mb={used:.1f} sent={sent} settled={settled} keys: {kinds_text}",
              flush=True)

    # ---- run -------------------------------------------------------------

    def run(self):
        self.weather = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeWeather)
        threading.Thread(target=self.weather.serve_forever, daemon=True).start()
        self.start_redis()
        for i in range(3):
            self.start_worker(i)
        threads = [threading.Thread(target=self.produce), threading.Thread(target=self.collect)]
        for t in threads:
            t.start()
        duration = self.args.duration
        kill_every = self.args.kill_every or max(30, min(180, duration // 6))
        redis_restart_at = duration * 0.2
        start = time.time()
        next_sample = 0.0
        next_kill = kill_every
        victim = 1
        restarted_redis = False
        try:
            while True:
                t = time.time() - start
                if t >= duration:
                    break
                if t >= next_sample:
                    self.sample(t)
                    next_sample += self.args.sample_every
                if t >= next_kill:
                    w = self.workers[victim]
                    w.send_signal(signal.SIGKILL)
                    w.wait()
                    self.events.append(f"t={t:.0f}s SIGKILL worker {victim + 1}, restarted")
                    print(self.events[-1], flush=True)
                    self.start_worker(victim)
                    victim = 2 if victim == 1 else 1
                    next_kill += kill_every
                if not restarted_redis and t >= redis_restart_at:
                    self.restart_redis()
                    restarted_redis = True
                    self.events.append(f"t={t:.0f}s Redis restarted (append-only file kept)")
                    print(self.events[-1], flush=True)
                time.sleep(0.2)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        # Let the workers finish what is pending, scheduled or retrying.
        deadline = time.time() + self.args.drain_s
        while time.time() < deadline:
            self.collect(until_stopped=False)
            with self.lock:
                if self.sent <= self.settled:
                    break
            time.sleep(0.5)
        self.sample(time.time() - start)
        return self.verdict()

    def verdict(self):
        with self.lock:
            lost = sorted(self.sent - self.settled)
            sent = len(self.sent)
        try:
            stats = Redis(self.port).call("HGETALL", TAG + "stats")
            stats = dict(zip(stats[::2], stats[1::2]))
        except (OSError, ConnectionError, RuntimeError):
            stats = {}
        print(f"jobs enqueued {sent}, settled {sent - len(lost)}, lost {len(lost)}"
              + (f" (e.g. {', '.join(lost[:5])})" if lost else ""))
        print("stats: " + " ".join(f"{k}={v}" for k, v in sorted(stats.items())))
        print(f"producer pushes refused or cut off (Redis restarting): {self.producer_errors}")
        ok = not lost
        half = [s for s in self.samples if s[0] >= self.args.duration / 2]
        for name, idx in (("worker 1 RSS", 1), ("Redis used_memory", 2)):
            pts = [(s[0], s[idx]) for s in half if s[idx] == s[idx]]
            if len(pts) < 3:
                print(f"{name}: too few samples in the second half to judge")
                ok = False
                continue
            slope = fit_slope(pts)
            span = pts[-1][0] - pts[0][0]
            mean = sum(v for _, v in pts) / len(pts)
            growth = slope * span
            tolerance = max(0.05 * mean, 2.0)
            verdict = "ok" if growth <= tolerance else "GROWING"
            print(f"{name}: mean {mean:.1f} MB, fitted growth over the second half "
                  f"{growth:+.2f} MB ({slope * 3600:+.2f} MB/h), tolerance {tolerance:.2f} MB: {verdict}")
            ok = ok and growth <= tolerance
        print("soak: " + ("PASSED" if ok else "FAILED"))
        return ok

    def cleanup(self):
        for w in self.workers:
            if w and w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in self.workers:
            if w:
                try:
                    w.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    w.kill()
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait()
        if self.weather:
            self.weather.shutdown()
        if self.args.keep:
            print(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def fit_slope(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=parse_duration, default=3600)
    p.add_argument("--rate", type=float, default=200.0, help="jobs per second")
    p.add_argument("--bin", default="target/release/toolq")
    p.add_argument("--sample-every", type=float, default=10.0)
    p.add_argument("--kill-every", type=parse_duration, default=0,
                   help="seconds between worker kills (default: duration/6, 30..180 s)")
    p.add_argument("--drain-s", type=float, default=60.0)
    p.add_argument("--keep", action="store_true", help="keep the logs and Redis files")
    args = p.parse_args()
    if not os.path.exists(args.bin):
        print(f"no toolq binary at {args.bin} (cargo build --release)", file=sys.stderr)
        return 2
    args.bin = os.path.abspath(args.bin)
    soak = Soak(args)
    try:
        return 0 if soak.run() else 1
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
