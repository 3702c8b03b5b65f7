#!/usr/bin/env python3
"""Checks of ops/nginx/toolq.conf (nginx in front of `toolq serve`), run by
ops/check.sh.

    python3 ops/check_nginx.py static
    python3 ops/check_nginx.py render OUT --upstream HOST:PORT --http PORT
                                      --https PORT --cert FILE --key FILE
    python3 ops/check_nginx.py live --http PORT --https PORT --upstream PORT
                                    --cafile FILE

static  reads the file as nginx does (blocks, and which location serves a
        URI) and fails unless: TLS 1.2/1.3 only with forward-secret AEAD
        ciphers; plain HTTP only redirects; the security headers are set with
        `always` and no location drops them; client_max_body_size equals the
        gateway's max_body_bytes and the read timeout exceeds its max_wait_ms
        (both read from src/config/serve.rs); /batch and /mcp unbuffered;
        upstream keep-alive; Authorization, X-Forwarded-For/-Proto sent on;
        the upstream and the certificate paths match docker-compose.yml.
render  writes the file with the upstream, the ports and the certificate
        paths replaced, to run it outside compose (each name must occur
        exactly once, so a renamed one fails here rather than going unnoticed).
live    with nginx running on the rendered file, starts a stub gateway on
        the upstream port and sends requests through nginx: redirect, TLS
        versions and ciphers, the headers on every kind of response, what the
        gateway receives, connection reuse, the body limit, and that /batch
        and /mcp stream each line or event as it comes.

Paths are relative to the repository root.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import ssl
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from check_ops import COMPOSE, ROOT, Findings

SITE = ROOT / "ops/nginx/toolq.conf"
SERVE_RS = ROOT / "src/config/serve.rs"

# The gateway's routes; every one must reach it.
ROUTES = ["/tools", "/execute", "/batch", "/jobs/0123", "/health", "/openapi.json",
          "/mcp", "/ui", "/ui/jobs"]
STREAMING = ["/batch", "/mcp"]
# Served by the gateway without a token, for the compose network only.
BLOCKED = ["/metrics"]
REQUIRED_HEADERS = ["Strict-Transport-Security", "X-Content-Type-Options",
                    "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy"]
REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin",
                     "strict-origin-when-cross-origin"}
HSTS_MIN_S = 365 * 24 * 3600


# ---- reading nginx configuration ---------------------------------------------------

@dataclass
class Directive:
    name: str
    args: list[str]
    line: int
    block: list["Directive"] | None = None

    def all(self, name: str) -> list["Directive"]:
        return [d for d in self.block or [] if d.name == name]

    def first(self, name: str) -> "Directive | None":
        found = self.all(name)
        return found[-1] if found else None


def tokens(text: str):
    """(token, line, quoted) of nginx syntax: words, quoted strings, { } ;"""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c, line, False
            i += 1
        elif c in "\"'":
            j, buf = i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            yield "".join(buf), line, True
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            yield text[i:j], line, False
            i = j


def parse(text: str) -> Directive:
    """The file as a tree of directives (root: a pseudo-block `main`)."""
    root = Directive("main", [], 0, [])
    stack, words = [root], []
    for tok, line, quoted in tokens(text):
        if not quoted and tok == ";":
            stack[-1].block.append(Directive(words[0], words[1:], line))
            words = []
        elif not quoted and tok == "{":
            d = Directive(words[0], words[1:], line, [])
            stack[-1].block.append(d)
            stack.append(d)
            words = []
        elif not quoted and tok == "}":
            if words or len(stack) == 1:
                raise ValueError(f"line {line}: unbalanced '}}' or missing ';'")
            stack.pop()
        else:
            words.append(tok)
    if len(stack) != 1 or words:
        raise ValueError("unexpected end of file: missing '}' or ';'")
    return root


# Directives whose inheritance is all-or-nothing: a level that has one of
# them gets none from the levels above.
ARRAY_DIRECTIVES = {"add_header", "proxy_set_header", "proxy_hide_header"}


def effective(server: Directive, location: Directive, name: str) -> list[Directive]:
    """The `name` directives in force in `location` of `server`."""
    for level in (location, server):
        found = level.all(name)
        if found:
            return found if name in ARRAY_DIRECTIVES else found[-1:]
    return []


def select_location(server: Directive, uri: str) -> Directive | None:
    """The location nginx picks for `uri`: an exact match, else the longest
    prefix if it is `^~`, else the first matching regex, else that prefix."""
    best, best_len, regexes = None, -1, []
    for loc in server.all("location"):
        args = loc.args
        if len(args) == 2 and args[0] == "=":
            if args[1] == uri:
                return loc
        elif len(args) == 2 and args[0] in ("~", "~*"):
            regexes.append((re.compile(args[1], re.I if args[0] == "~*" else 0), loc))
        else:
            prefix = args[-1]
            if uri.startswith(prefix) and len(prefix) > best_len:
                best, best_len = loc, len(prefix)
    if best is not None and best.args[0] == "^~":
        return best
    for rx, loc in regexes:
        if rx.search(uri):
            return loc
    return best


def nginx_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", s)
    if not m:
        raise ValueError(f"not an nginx size: {s}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def nginx_seconds(s: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}
    total = 0.0
    parts = re.findall(r"(\d+)(ms|s|m|h|d|)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"not an nginx time: {s}")
    for num, unit in parts:
        total += int(num) * units[unit]
    return total


def serve_default(name: str) -> int:
    """An integer constant of src/config/serve.rs, e.g. `8 * 1024 * 1024`."""
    m = re.search(rf"pub const {name}: \w+ = ([0-9_ *]+);", SERVE_RS.read_text())
    if not m:
        raise ValueError(f"{name} not found in {SERVE_RS.relative_to(ROOT)}")
    value = 1
    for factor in m.group(1).split("*"):
        value *= int(factor.strip().replace("_", ""))
    return value


def load_site() -> Directive:
    return parse(SITE.read_text())


def compose_services() -> dict:
    return yaml.safe_load(COMPOSE.read_text()).get("services", {})


# ---- static checks ---------------------------------------------------------------

def header_values(directives: list[Directive]) -> dict[str, list[Directive]]:
    out: dict[str, list[Directive]] = {}
    for d in directives:
        out.setdefault(d.args[0].lower(), []).append(d)
    return out


def check_csp(f: Findings, policy: str) -> None:
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    if directives.get("default-src") != ["'self'"]:
        f.fail(f"Content-Security-Policy: default-src is {directives.get('default-src')}, "
               "expected 'self' only")
    for name, sources in directives.items():
        for src in sources:
            low = src.lower()
            if low in ("'unsafe-inline'", "'unsafe-eval'") or "*" in low or ":" in low:
                f.fail(f"Content-Security-Policy: {name} allows {src} "
                       "(no CDN, no inline code, no scheme or wildcard sources)")
    if directives.get("frame-ancestors") not in (["'none'"], ["'self'"]):
        f.fail("Content-Security-Policy: no frame-ancestors 'none'")


def check_security_headers(f: Findings, server: Directive) -> None:
    headers = header_values(server.all("add_header"))
    for name in REQUIRED_HEADERS:
        found = headers.get(name.lower(), [])
        if len(found) != 1:
            f.fail(f"add_header {name}: {len(found)} in the TLS server, expected 1")
            continue
        d = found[0]
        if d.args[-1] != "always":
            f.fail(f"line {d.line}: add_header {name} without `always` "
                   "(it would be missing from 4xx/5xx responses)")
        value = d.args[1] if len(d.args) > 1 else ""
        low = value.lower()
        if name == "Strict-Transport-Security":
            m = re.search(r"max-age=(\d+)", low)
            if not m or int(m.group(1)) < HSTS_MIN_S:
                f.fail(f"line {d.line}: HSTS max-age below one year: {value!r}")
        elif name == "X-Content-Type-Options" and low != "nosniff":
            f.fail(f"line {d.line}: X-Content-Type-Options {value!r}, expected nosniff")
        elif name == "X-Frame-Options" and low != "deny":
            f.fail(f"line {d.line}: X-Frame-Options {value!r}, expected DENY")
        elif name == "Referrer-Policy" and low not in REFERRER_POLICIES:
            f.fail(f"line {d.line}: Referrer-Policy {value!r}, expected one of "
                   + ", ".join(sorted(REFERRER_POLICIES)))
        elif name == "Content-Security-Policy":
            check_csp(f, value)
    # The gateway's own copies would make the header appear twice.
    hidden = {d.args[0].lower() for d in server.all("proxy_hide_header")}
    for name in REQUIRED_HEADERS:
        if name.lower() not in hidden:
            f.fail(f"no proxy_hide_header {name}: the gateway's copy would be sent too")
    # add_header is all-or-nothing per level: one in a location drops them all.
    for loc in server.all("location"):
        if loc.all("add_header"):
            f.fail(f"line {loc.line}: location {' '.join(loc.args)} has its own add_header, "
                   "so it sends none of the server's security headers")
    f.note(f"headers ({', '.join(REQUIRED_HEADERS)}) set once, with `always`, "
           "on every location")


def check_tls(f: Findings, server: Directive) -> None:
    protocols = server.first("ssl_protocols")
    if protocols is None or sorted(protocols.args) != ["TLSv1.2", "TLSv1.3"]:
        f.fail(f"ssl_protocols {protocols.args if protocols else None}, "
               "expected TLSv1.2 TLSv1.3")
    ciphers = server.first("ssl_ciphers")
    if ciphers is None:
        f.fail("no ssl_ciphers: nginx's default list allows CBC and non-ECDHE suites")
    else:
        suites = ciphers.args[0].split(":")
        for s in suites:
            if not re.fullmatch(r"ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)", s):
                f.fail(f"ssl_ciphers: {s} is not an ECDHE suite with AES-GCM or ChaCha20-Poly1305")
        f.note(f"TLS 1.2/1.3, {len(suites)} TLS 1.2 suites, all ECDHE + AEAD")
    paths = {}
    for name in ("ssl_certificate", "ssl_certificate_key"):
        d = server.first(name)
        if d is None or not d.args[0].startswith("/run/secrets/"):
            f.fail(f"{name} is not a mounted secret under /run/secrets/")
        else:
            paths[name] = d.args[0]
    nginx = compose_services().get("nginx", {})
    mounted = {f"/run/secrets/{s if isinstance(s, str) else s.get('target', s.get('source'))}"
               for s in nginx.get("secrets", [])}
    for name, path in paths.items():
        if path not in mounted:
            f.fail(f"{name} {path}: the nginx service of {COMPOSE.name} mounts no such secret")


def check_redirect(f: Findings, servers: list[Directive]) -> None:
    plain = [s for s in servers if any("ssl" not in d.args for d in s.all("listen"))]
    if not plain:
        f.fail("no plain-HTTP server: http:// requests get no redirect")
    for s in plain:
        ret = s.first("return")
        if (ret is None or ret.args[0] not in ("301", "308")
                or not ret.args[1].startswith("https://")):
            f.fail(f"line {s.line}: the plain-HTTP server does not answer 301 https://...")
        if s.all("location") or s.all("proxy_pass"):
            f.fail(f"line {s.line}: the plain-HTTP server proxies requests")
    f.note("plain HTTP: 301 to https:// only")


def check_proxying(f: Findings, server: Directive, upstream: Directive) -> None:
    max_body = serve_default("DEFAULT_SERVE_MAX_BODY_BYTES")
    max_wait_s = serve_default("DEFAULT_SERVE_MAX_WAIT_MS") / 1000
    cmbs = server.first("client_max_body_size")
    if cmbs is None or nginx_size(cmbs.args[0]) != max_body:
        f.fail(f"client_max_body_size {cmbs.args[0] if cmbs else '(unset: 1m)'} is not "
               f"the gateway's max_body_bytes, {max_body} bytes")
    else:
        f.note(f"client_max_body_size {cmbs.args[0]} = max_body_bytes {max_body} "
               f"({SERVE_RS.relative_to(ROOT)})")
    if not upstream.all("keepalive"):
        f.fail(f"upstream {upstream.args[0]}: no keepalive (a new connection per request)")

    for uri in ROUTES:
        loc = select_location(server, uri)
        if loc is None:
            f.fail(f"{uri}: no location serves it")
            continue
        where = f"{uri} (location {' '.join(loc.args)}, line {loc.line})"
        pp = loc.first("proxy_pass")
        if pp is None or pp.args[0] != f"http://{upstream.args[0]}":
            f.fail(f"{where}: not proxy_pass http://{upstream.args[0]} (unchanged URI)")
        for d in loc.all("client_max_body_size"):
            f.fail(f"{where}: its own client_max_body_size {d.args[0]}")

        def value(name: str) -> str | None:
            found = effective(server, loc, name)
            return found[-1].args[0] if found else None

        if value("proxy_http_version") != "1.1":
            f.fail(f"{where}: proxy_http_version is not 1.1 (no upstream keep-alive)")
        read = value("proxy_read_timeout") or "60s"
        if nginx_seconds(read) <= max_wait_s:
            f.fail(f"{where}: proxy_read_timeout {read} does not exceed the gateway's "
                   f"max_wait_ms ({max_wait_s:g} s)")
        sent = {d.args[0].lower(): d.args[1] if len(d.args) > 1 else ""
                for d in effective(server, loc, "proxy_set_header")}
        # X-Forwarded-For: the client's address only (nginx is the edge; the
        # client's own header would let it pick the address the gateway sees).
        want = {"connection": "", "x-forwarded-for": "$remote_addr",
                "x-forwarded-proto": "$scheme", "authorization": "$http_authorization",
                "host": "$host"}
        for h, v in want.items():
            if h not in sent:
                f.fail(f"{where}: no proxy_set_header {h}")
            elif sent[h] != v:
                f.fail(f"{where}: proxy_set_header {h} {sent[h]!r}, expected {v!r}")
        if uri in STREAMING:
            if value("proxy_buffering") != "off":
                f.fail(f"{where}: proxy_buffering is not off (the stream would be held back)")
            if value("gzip") == "on":
                f.fail(f"{where}: gzip on (it buffers the stream)")
    for uri in BLOCKED:
        loc = select_location(server, uri)
        if loc is None or loc.first("proxy_pass") is not None or loc.first("return") is None:
            f.fail(f"{uri} is proxied to the gateway: it must not be public "
                   f"(location = {uri} {{ return 404; }})")
    f.note(f"{' '.join(BLOCKED)} answered by nginx, not proxied")
    f.note(f"{len(ROUTES)} routes reach the gateway over HTTP/1.1 keep-alive with "
           f"Host, X-Forwarded-For/-Proto and Authorization; read timeouts above "
           f"{max_wait_s:g} s; {' and '.join(STREAMING)} unbuffered")


def check_upstream_matches_compose(f: Findings, upstream: Directive) -> None:
    servers = upstream.all("server")
    if len(servers) != 1:
        f.fail(f"upstream {upstream.args[0]}: {len(servers)} server lines, expected 1 "
               "(the compose service)")
        return
    host, _, port = servers[0].args[0].rpartition(":")
    services = compose_services()
    svc = services.get(host)
    if svc is None:
        f.fail(f"upstream server {host}:{port}: {COMPOSE.name} has no service {host}")
        return
    if svc.get("command") != ["serve"]:
        f.fail(f"upstream server {host}: that service's command is not [\"serve\"]")
    env = svc.get("environment") or {}
    addr = env.get("TOOLQ_SERVE__ADDR", "") if isinstance(env, dict) else ""
    if not addr.endswith(f":{port}") or not addr.startswith("0.0.0.0:"):
        f.fail(f"upstream {host}:{port}, but {host} listens on TOOLQ_SERVE__ADDR={addr!r}")
    f.note(f"upstream {host}:{port} = compose service {host} (toolq serve on {addr})")


def check_static(f: Findings) -> None:
    try:
        root = load_site()
    except ValueError as e:
        f.fail(f"{SITE.relative_to(ROOT)}: {e}")
        return
    upstreams = root.all("upstream")
    servers = root.all("server")
    tls = [s for s in servers if any("ssl" in d.args for d in s.all("listen"))]
    f.note(f"{SITE.relative_to(ROOT)}: {len(upstreams)} upstream, {len(servers)} servers, "
           f"{len(tls)} with TLS")
    if len(upstreams) != 1 or len(tls) != 1:
        f.fail("expected one upstream and one TLS server")
        return
    check_redirect(f, servers)
    check_tls(f, tls[0])
    check_security_headers(f, tls[0])
    check_proxying(f, tls[0], upstreams[0])
    check_upstream_matches_compose(f, upstreams[0])


# ---- render ----------------------------------------------------------------------

def render(out: str, upstream: str, http_port: int, https_port: int, cert: str, key: str) -> None:
    f = Findings()
    text = SITE.read_text()
    root = parse(text)
    up = root.first("upstream").first("server").args[0]
    # Directive lines only (comments may name the same things).
    swaps = [
        (re.compile(rf"^(\s*server\s+){re.escape(up)}(\s*;)", re.M), rf"\g<1>{upstream}\g<2>"),
        (re.compile(r"^(\s*listen\s+)80(\s)", re.M), rf"\g<1>127.0.0.1:{http_port}\g<2>"),
        (re.compile(r"^(\s*listen\s+)443(\s)", re.M), rf"\g<1>127.0.0.1:{https_port}\g<2>"),
        (re.compile(r"^(\s*ssl_certificate\s+)/run/secrets/tls_cert(\s*;)", re.M),
         rf"\g<1>{cert}\g<2>"),
        (re.compile(r"^(\s*ssl_certificate_key\s+)/run/secrets/tls_key(\s*;)", re.M),
         rf"\g<1>{key}\g<2>"),
    ]
    for rx, new in swaps:
        text, n = rx.subn(new, text)
        if n != 1:
            f.fail(f"{rx.pattern!r} occurs {n} times in {SITE.relative_to(ROOT)}, expected once")
    Path(out).write_text(text)
    f.note(f"rendered to {out}: upstream {upstream}, http {http_port}, https {https_port}")
    f.exit()


# ---- live ------------------------------------------------------------------------

class Stub:
    """The gateway as nginx sees it: records each request, answers JSON, and
    streams /batch (NDJSON) and GET /mcp (SSE) a line at a time, holding the
    second line until the client says it has the first."""

    def __init__(self, port: int) -> None:
        self.requests: list[dict] = []
        self.got_first = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = 0
                while received < length:
                    chunk = self.rfile.read(min(65536, length - received))
                    if not chunk:
                        break
                    received += len(chunk)
                seen = {"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body_len": received, "peer": self.client_address}
                stub.requests.append(seen)
                if self.path.startswith("/batch") or (self.path.startswith("/mcp")
                                                      and self.command == "GET"):
                    self.stream()
                    return
                body = json.dumps({k: v for k, v in seen.items() if k != "peer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                # Its own copy of a header nginx sets: must not get through.
                self.send_header("X-Frame-Options", "SAMEORIGIN")
                self.end_headers()
                self.wfile.write(body)

            def stream(self) -> None:
                sse = self.path.startswith("/mcp")
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream" if sse
                                 else "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = ([b'data: {"n":1}\n\n', b'data: {"n":2}\n\n'] if sse
                         else [b'{"n":1}\n', b'{"n":2}\n'])
                self.chunk(lines[0])
                stub.got_first.wait(5)
                self.chunk(lines[1])
                self.chunk(b"")

            def chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            do_GET = do_POST = do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Live:
    def __init__(self, f: Findings, args) -> None:
        self.f, self.args = f, args
        self.stub = Stub(args.upstream)
        self.ctx = ssl.create_default_context(cafile=args.cafile)

    def https(self, ctx: ssl.SSLContext | None = None, timeout: float = 10):
        return http.client.HTTPSConnection("127.0.0.1", self.args.https,
                                           context=ctx or self.ctx, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None):
        conn = self.https()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def expect(self, ok: bool, msg: str) -> bool:
        if ok:
            self.f.note(f"ok   {msg}")
        else:
            self.f.fail(msg)
        return ok

    def headers_ok(self, what: str, resp) -> None:
        bad = []
        for name in REQUIRED_HEADERS:
            values = resp.headers.get_all(name) or []
            if len(values) != 1:
                bad.append(f"{name} x{len(values)}")
        if resp.headers.get("X-Frame-Options") != "DENY":
            bad.append(f"X-Frame-Options {resp.headers.get('X-Frame-Options')!r}")
        self.expect(not bad, f"{what}: the {len(REQUIRED_HEADERS)} security headers, once each"
                    + (f" (wrong: {', '.join(bad)})" if bad else ""))

    def redirect(self) -> None:
        before = len(self.stub.requests)
        conn = http.client.HTTPConnection("127.0.0.1", self.args.http, timeout=10)
        conn.request("POST", "/execute?x=1", body=b"{}")
        resp = conn.getresponse()
        resp.read()
        loc = resp.headers.get("Location", "")
        reached = len(self.stub.requests) - before
        self.expect(resp.status == 301 and loc.startswith("https://")
                    and loc.endswith("/execute?x=1") and reached == 0,
                    f"http:// -> {resp.status} {loc or '(no Location)'}; "
                    f"{reached} request(s) reached the gateway")

    def tls(self) -> None:
        def handshake(label: str, want: bool, **kw) -> None:
            ctx = ssl.create_default_context(cafile=self.args.cafile)
            ctx.minimum_version = kw.get("min", ssl.TLSVersion.MINIMUM_SUPPORTED)
            ctx.maximum_version = kw.get("max", ssl.TLSVersion.MAXIMUM_SUPPORTED)
            if "ciphers" in kw:
                ctx.set_ciphers(kw["ciphers"])
            try:
                with socket.create_connection(("127.0.0.1", self.args.https), timeout=5) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                        got = f"{s.version()} {s.cipher()[0]}"
                        ok = True
            except (ssl.SSLError, OSError) as e:
                got, ok = f"refused ({getattr(e, 'reason', None) or e})", False
            self.expect(ok == want, f"TLS {label}: {got}")

        handshake("1.3", True, min=ssl.TLSVersion.TLSv1_3)
        handshake("1.2 ECDHE-ECDSA-AES128-GCM-SHA256", True, max=ssl.TLSVersion.TLSv1_2,
                  ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
        handshake("1.2 CBC suite ECDHE-ECDSA-AES128-SHA256", False,
                  max=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0")
        # OpenSSL 3 refuses TLS 1.1 at its default security level even where
        # ssl_protocols allowed it: the static check is what pins the list.
        with warnings.catch_warnings():  # offering TLS 1.1 is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            handshake("1.1", False, max=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0")

    def forwarding(self) -> None:
        resp, _ = self.request("GET", "/tools", headers={
            "Authorization": "Bearer live-check-token", "X-Forwarded-For": "6.6.6.6"})
        self.headers_ok("GET /tools 200", resp)
        seen = self.stub.requests[-1]["headers"] if self.stub.requests else {}
        self.expect(resp.status == 200, f"GET /tools: {resp.status} from the gateway")
        self.expect(seen.get("authorization") == "Bearer live-check-token",
                    f"gateway got Authorization {seen.get('authorization')!r}")
        self.expect(seen.get("x-forwarded-for") == "127.0.0.1",
                    f"gateway got X-Forwarded-For {seen.get('x-forwarded-for')!r} "
                    "for a client that sent 6.6.6.6 (expected its address only)")
        self.expect(seen.get("x-forwarded-proto") == "https",
                    f"gateway got X-Forwarded-Proto {seen.get('x-forwarded-proto')!r}")
        self.expect("connection" not in seen or seen["connection"].lower() == "keep-alive",
                    f"gateway got Connection {seen.get('connection', '(none)')!r}")
        # Three requests on three client connections: one upstream connection.
        peers = []
        for _ in range(3):
            self.request("GET", "/health")
            peers.append(self.stub.requests[-1]["peer"])
        self.expect(len(set(peers)) == 1,
                    f"upstream keep-alive: 3 requests on {len(set(peers))} gateway connection(s)")
        for uri in BLOCKED:
            before = len(self.stub.requests)
            resp, _ = self.request("GET", uri)
            reached = len(self.stub.requests) - before
            self.expect(resp.status == 404 and reached == 0,
                        f"GET {uri}: {resp.status}; {reached} request(s) reached the gateway")

    def body_limit(self) -> None:
        limit = serve_default("DEFAULT_SERVE_MAX_BODY_BYTES")
        resp, _ = self.request("POST", "/execute", body=b"x" * limit,
                               headers={"Content-Type": "application/json"})
        got = self.stub.requests[-1]["body_len"] if self.stub.requests else None
        self.expect(resp.status == 200 and got == limit,
                    f"body of {limit} bytes (max_body_bytes): {resp.status}, gateway got {got}")
        before = len(self.stub.requests)
        resp, _ = self.request("POST", "/execute", body=b"x" * (limit + 1))
        reached = len(self.stub.requests) - before
        self.expect(resp.status == 413 and reached == 0,
                    f"body of {limit + 1} bytes: {resp.status}; "
                    f"{reached} request(s) reached the gateway")
        self.headers_ok("413 from nginx", resp)

    def streaming(self, method: str, path: str, first: bytes) -> None:
        self.stub.got_first.clear()
        conn = self.https(timeout=3)
        conn.request(method, path, body=b'{"tool":"echo"}\n' if method == "POST" else None)
        resp = conn.getresponse()
        self.headers_ok(f"{method} {path} stream", resp)
        start = time.monotonic()
        try:
            line = resp.readline()
            if first.startswith(b"data:"):
                line += resp.readline()
        except (socket.timeout, TimeoutError):
            line = b""
        waited = time.monotonic() - start
        self.stub.got_first.set()
        rest = b""
        try:
            rest = resp.read()
        except (socket.timeout, TimeoutError, http.client.HTTPException):
            pass
        conn.close()
        # Shows the stream is passed on as it comes; that proxy_buffering is
        # off is the static check's (nginx forwards small chunks either way).
        self.expect(line == first,
                    f"{method} {path}: first {'event' if first.startswith(b'data') else 'line'} "
                    f"{line!r} after {waited:.2f} s, while the gateway held back the second "
                    f"(then {len(rest)} more bytes)")

    def run(self) -> None:
        self.redirect()
        self.tls()
        self.forwarding()
        self.body_limit()
        self.streaming("POST", "/batch", b'{"n":1}\n')
        self.streaming("GET", "/mcp", b'data: {"n":1}\n\n')
        self.stub.server.shutdown()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("static")
    r = sub.add_parser("render")
    r.add_argument("out")
    for name in ("upstream", "cert", "key"):
        r.add_argument(f"--{name}", required=True)
    for name in ("http", "https"):
        r.add_argument(f"--{name}", type=int, required=True)
    lv = sub.add_parser("live")
    for name in ("http", "https", "upstream"):
        lv.add_argument(f"--{name}", type=int, required=True)
    lv.add_argument("--cafile", required=True)
    args = p.parse_args(argv[1:])
    if args.cmd == "render":
        render(args.out, args.upstream, args.http, args.https, args.cert, args.key)
    f = Findings()
    if args.cmd == "static":
        check_static(f)
    else:
        Live(f, args).run()
    f.exit()


if __name__ == "__main__":
    main(sys.argv)
