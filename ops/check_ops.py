#!/usr/bin/env python3
"""Static checks of toolq's deployment files, run by ops/check.sh.

    python3 ops/check_ops.py CHECK [ARG]

Checks (each prints what it looked at and exits non-zero on a finding):
  metrics           every `toolq_*` name in the dashboard and the alert rules
                    is one of src/health/metrics.rs (histograms only with
                    their `_bucket`, `_sum`, `_count` series)
  dashboard         the dashboard is valid JSON, takes its Prometheus from
                    a `datasource` template variable (every panel, query
                    and variable uses `${datasource}`; no uid written in),
                    and has a `queue` template variable
  dashboard-rules OUT
                    writes every dashboard query as a recording rule to OUT,
                    so `promtool check rules OUT` parses them all
  alerts            the required alerts exist, each with a severity, summary,
                    description and a runbook anchor that ops/README.md has
  compose           the services exist, the worker and the gateway can scale,
                    the gateway is reached only through nginx and reads its
                    JWT key from a git-ignored secret file, and no secret
                    literal is written in docker-compose.yml; every ${VAR} it
                    reads is documented in .env.example
  env               .env.example documents every setting .env can set (every
                    worker setting, and whatever a service passes through);
                    the TOOLQ_ names these files set are keys or names
                    src/config/variables.rs lets through
  config            config/toolq.toml documents every key of every section
  dockerfile        the final stage runs as a non-root USER, with a HEALTHCHECK
  acl               ops/redis/users.acl: default user off, placeholder
                    passwords only, no key or command wildcards
  hot-text          link/hot-text.txt (the functions build.rs has the linker
                    lay out first) was recorded for this Cargo.lock and for
                    the rustc the Dockerfile builds with, and lists only
                    symbol names, each once; the Dockerfile builds with
                    `cargo build-static`, the static build it names

Needs PyYAML. Paths are relative to the repository root.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "src/health/metrics.rs"
DASHBOARD = ROOT / "ops/grafana/dashboards/toolq.json"
ALERTS = ROOT / "ops/alerts.yml"
README = ROOT / "ops/README.md"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
ACL = ROOT / "ops/redis/users.acl"
HOT_TEXT = ROOT / "link/hot-text.txt"
CARGO_LOCK = ROOT / "Cargo.lock"
CARGO_CONFIG = ROOT / ".cargo/config.toml"
CONFIG_RS = ROOT / "src/config/mod.rs"
WEATHER_CONFIG_RS = ROOT / "src/tools/weather/config.rs"
SERVE_CONFIG_RS = ROOT / "src/config/serve.rs"
VARIABLES_RS = ROOT / "src/config/variables.rs"
CONFIG_TOML = ROOT / "config/toolq.toml"
HTTP_TOOL_RS = ROOT / "src/tools/http/tool.rs"
MCP_CONFIG_RS = ROOT / "src/tools/mcp/config.rs"
SCHEDULE_RS = ROOT / "src/schedule/definition.rs"

REQUIRED_ALERTS = [
    "ToolqNoLiveWorkers",
    "ToolqBacklogGrowing",
    "ToolqWaitTimeHigh",
    "ToolqFailureRatioHigh",
    "ToolqDeadJobsGrowing",
    "ToolqRedisErrors",
]
REQUIRED_SERVICES = ["redis", "worker", "prometheus", "grafana", "gateway", "nginx"]
# Settings toolq reads from the environment (DESIGN.md, Configuration).
REQUIRED_ENV = [
    "TOOLQ_REDIS_URL", "TOOLQ_CONCURRENCY", "TOOLQ_HTTP_ADDR", "TOOLQ_QUEUES",
    "TOOLQ_LOG_FORMAT", "TOOLQ_SHUTDOWN_GRACE_S", "TOOLQ_RESULT_TTL_S",
    "TOOLQ_TOOLS__WEATHER__BASE_URL", "OPENWEATHER_API_KEY", "TOOLQ_REDIS_CA_FILE",
]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# A metric-like token: not preceded by a name character.
METRIC_TOKEN = re.compile(r"(?<![A-Za-z0-9_:])toolq_[A-Za-z0-9_:]*")


class Findings:
    """Collects problems; prints what was checked."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, msg: str) -> None:
        self.problems.append(msg)
        print(f"  problem: {msg}")

    def note(self, msg: str) -> None:
        print(f"  {msg}")

    def exit(self) -> None:
        sys.exit(1 if self.problems else 0)


# ---- metric names ---------------------------------------------------------------

def exported_series() -> tuple[set[str], set[str]]:
    """Series names the worker exports, and the histogram base names.

    Reads every `pub const NAME: &str = "toolq_..."` of metrics.rs; a const
    whose doc comment starts with `Histogram` exposes `_bucket/_sum/_count`.
    """
    series: set[str] = set()
    histograms: set[str] = set()
    doc: list[str] = []
    for line in METRICS_RS.read_text().splitlines():
        s = line.strip()
        if s.startswith("///"):
            doc.append(s[3:].strip())
            continue
        m = re.match(r'pub const \w+: &str = "(toolq_[a-z0-9_]+)";', s)
        if m:
            name = m.group(1)
            if doc and doc[0].startswith("Histogram"):
                histograms.add(name)
                series.update(name + sfx for sfx in HISTOGRAM_SUFFIXES)
            else:
                series.add(name)
        doc = []
    return series, histograms


def strings_in(node) -> list[str]:
    """Every string value in a parsed JSON/YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings_in(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings_in(v)]
    return []


def check_metrics(f: Findings) -> None:
    series, histograms = exported_series()
    if not series:
        f.fail(f"no metric names found in {METRICS_RS.relative_to(ROOT)}")
        return
    f.note(f"{len(series)} series from {METRICS_RS.relative_to(ROOT)} "
           f"({len(histograms)} histograms with _bucket/_sum/_count)")
    sources = {
        DASHBOARD: json.loads(DASHBOARD.read_text()),
        ALERTS: yaml.safe_load(ALERTS.read_text()),
    }
    for path, tree in sources.items():
        used = {tok for s in strings_in(tree) for tok in METRIC_TOKEN.findall(s)}
        unknown = sorted(used - series)
        for name in unknown:
            hint = " (a histogram: use _bucket, _sum or _count)" if name in histograms else ""
            f.fail(f"{path.relative_to(ROOT)} uses unknown metric {name}{hint}")
        f.note(f"{path.relative_to(ROOT)}: {len(used)} metric names, {len(unknown)} unknown")


# ---- dashboard ------------------------------------------------------------------

def dashboard_targets(dash: dict) -> list[tuple[str, dict]]:
    """(panel title, target) for every query of every panel, rows included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    return out


# The datasource every panel, query and variable names: the dashboard's own
# `datasource` variable, so it imports into a Grafana whose Prometheus has
# any uid (the variable offers the Prometheus datasources there).
DS_VARIABLE = "datasource"
DS_REF = {"type": "prometheus", "uid": "${" + DS_VARIABLE + "}"}
# Grafana's built-in annotation source, the one other datasource allowed.
BUILTIN_DS = {"type": "grafana", "uid": "-- Grafana --"}


def datasource_refs(node, where: str = "$") -> list[tuple[str, object]]:
    """(JSON path, value) of every `datasource` field anywhere in the dashboard."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                out.append((f"{where}.{k}", v))
            out.extend(datasource_refs(v, f"{where}.{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(datasource_refs(v, f"{where}[{i}]"))
    return out


def check_dashboard(f: Findings) -> None:
    try:
        dash = json.loads(DASHBOARD.read_text())
    except json.JSONDecodeError as e:
        f.fail(f"{DASHBOARD.relative_to(ROOT)} is not valid JSON: {e}")
        return
    targets = dashboard_targets(dash)
    variables = dash.get("templating", {}).get("list", [])
    f.note(f"valid JSON, {len(targets)} queries, {len(variables)} template variables")
    by_name = {v.get("name"): v for v in variables}
    ds_var = by_name.get(DS_VARIABLE)
    if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        f.fail(f"no `{DS_VARIABLE}` template variable of type datasource, query prometheus")
    if "queue" not in by_name:
        f.fail("no `queue` template variable")
    elif by_name["queue"].get("datasource") != DS_REF:
        f.fail(f"the queue variable's datasource is {by_name['queue'].get('datasource')!r}, "
               f"expected {DS_REF!r}")
    if "__inputs" in dash:
        f.fail("`__inputs` (an export for sharing): provisioning would not fill them in")
    for title, t in targets:
        if not t.get("expr"):
            f.fail(f"panel {title!r}: a target without expr")
        if t.get("datasource") != DS_REF:
            f.fail(f"panel {title!r}: target datasource {t.get('datasource')!r}, expected {DS_REF!r}")

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    queried = [p for p in panels(dash.get("panels", [])) if p.get("type") != "row"]
    for p in queried:
        if p.get("datasource") != DS_REF:
            f.fail(f"panel {p.get('title')!r}: datasource {p.get('datasource')!r}, "
                   f"expected {DS_REF!r}")
    refs = datasource_refs(dash)
    for path, ref in refs:
        if ref not in (DS_REF, BUILTIN_DS):
            f.fail(f"{path}: datasource {ref!r} is neither {DS_REF!r} nor the built-in "
                   "annotation source (a uid written in breaks the import elsewhere)")
    f.note(f"{len(queried)} panels, {len(refs)} datasource references, all through "
           f"${{{DS_VARIABLE}}} but the built-in annotations")
    f.note("template variables: " + ", ".join(by_name))


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values Prometheus can parse."""
    for var, val in (("$__rate_interval", "1m"), ("$__interval", "1m"),
                     ("$__range", "1h"), ("$queue", ".*")):
        expr = expr.replace(var, val)
    return expr


def write_dashboard_rules(f: Findings, out: str) -> None:
    dash = json.loads(DASHBOARD.read_text())
    rules = []
    for i, (title, t) in enumerate(dashboard_targets(dash)):
        rules.append({"record": f"toolq_dashboard:query_{i}",
                      "expr": grafana_to_promql(t["expr"])})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]},
                                        sort_keys=False))
    f.note(f"{len(rules)} dashboard queries written to {out}")


# ---- alerts ---------------------------------------------------------------------

def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_alerts(f: Findings) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    anchors = {github_anchor(m.group(1))
               for m in re.finditer(r"^#{1,6}\s+(.+)$", README.read_text(), re.M)}
    names = [r["alert"] for r in rules]
    f.note(f"{len(rules)} alerts: {', '.join(names)}")
    for want in REQUIRED_ALERTS:
        if want not in names:
            f.fail(f"alert {want} is missing")
    for r in rules:
        name = r["alert"]
        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            f.fail(f"{name}: severity label missing or not critical/warning/info")
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            if not ann.get(key):
                f.fail(f"{name}: annotation {key} missing")
        rb = ann.get("runbook", "")
        m = re.fullmatch(r"ops/README\.md#([\w-]+)", rb)
        if not m:
            f.fail(f"{name}: runbook {rb!r} is not ops/README.md#<anchor>")
        elif m.group(1) not in anchors:
            f.fail(f"{name}: ops/README.md has no heading with anchor #{m.group(1)}")
    f.note(f"runbook anchors checked against {len(anchors)} headings of ops/README.md")


# ---- compose --------------------------------------------------------------------

SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL)", re.I)
# A *_FILE variable that names a compose secret's mount holds a path, not a secret.
SECRET_FILE = re.compile(r"^/run/secrets/[A-Za-z0-9_.-]+$")
INTERPOLATION_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://([^/@\s:]+):([^@\s]+)@", re.I)


def env_items(env) -> list[tuple[str, str]]:
    """A service's `environment:` as (key, value) pairs, map or list form."""
    if isinstance(env, dict):
        return [(k, "" if v is None else str(v)) for k, v in env.items()]
    if isinstance(env, list):
        return [tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env]
    return []


def check_compose(f: Findings) -> None:
    text = COMPOSE.read_text()
    doc = yaml.safe_load(text)
    services = doc.get("services", {})
    f.note("services: " + ", ".join(services))
    for name in REQUIRED_SERVICES:
        if name not in services:
            f.fail(f"service {name} is missing")
    worker = services.get("worker", {})
    if "container_name" in worker or "ports" in worker:
        f.fail("worker has container_name or ports: it could not be scaled")
    if worker.get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
        f.fail("worker does not wait for redis to be healthy")
    for key in ("healthcheck", "stop_grace_period", "restart"):
        if key not in worker:
            f.fail(f"worker has no {key}")
    # Least privilege: a worker gets its own settings, not the whole .env
    # with every other user's password in it.
    if "env_file" in worker:
        f.fail("worker has env_file: it would get every password in .env")
    passed = {k for k, _ in env_items(worker.get("environment"))}
    for var in sorted(worker_env_names() - passed):
        f.fail(f"worker does not pass {var} (a key of src/config/mod.rs) from .env")
    f.note(f"worker passes {len(passed)} variables through, no env_file")
    if "healthcheck" not in services.get("redis", {}):
        f.fail("redis has no healthcheck")
    check_compose_gateway(f, doc)

    # Secrets: a secret-named variable must be pure ${VAR} interpolation, and
    # a URL's password must be one too.
    for sname, svc in services.items():
        for key, val in env_items(svc.get("environment")):
            if key.endswith("_FILE") and SECRET_FILE.match(val):
                continue
            if SECRET_KEY.search(key) and val and not INTERPOLATION_ONLY.match(val):
                f.fail(f"{sname}: {key} holds a literal value")
    for s in strings_in(doc):
        for m in URL_USERINFO.finditer(s):
            if not INTERPOLATION_ONLY.match(m.group(2)):
                f.fail(f"URL with a literal password: {s}")
    if re.search(r"change-me", text, re.I):
        f.fail("a placeholder password is written in docker-compose.yml")
    f.note("no secret literal: secret-named variables and URL passwords are ${VAR} only")

    # Every variable compose interpolates must be documented in .env.example.
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    for var in sorted(used - documented):
        f.fail(f"docker-compose.yml reads ${{{var}}}, which .env.example does not document")
    f.note(f"{len(used)} interpolated variables checked against .env.example")


def check_compose_gateway(f: Findings, doc: dict) -> None:
    """`toolq serve` behind nginx: only nginx is published, the JWT key is a
    secret file, and the secret files are git-ignored."""
    services = doc.get("services", {})
    secrets = doc.get("secrets", {}) or {}
    gateway, nginx = services.get("gateway", {}), services.get("nginx", {})
    if gateway.get("command") != ["serve"]:
        f.fail("gateway: command is not [\"serve\"]")
    if "ports" in gateway or "container_name" in gateway:
        f.fail("gateway has ports or container_name: it must be reached through nginx "
               "(TLS) only, and scale")
    if gateway.get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
        f.fail("gateway does not wait for redis to be healthy")
    for key in ("healthcheck", "stop_grace_period", "restart"):
        if key not in gateway:
            f.fail(f"gateway has no {key}")
    if "env_file" in gateway:
        f.fail("gateway has env_file: it would get every password in .env")
    env = dict(env_items(gateway.get("environment")))
    if not env.get("TOOLQ_SERVE__ADDR", "").startswith("0.0.0.0:"):
        f.fail("gateway: TOOLQ_SERVE__ADDR does not listen on 0.0.0.0 (nginx could not reach it)")
    if not re.match(r"rediss?://gateway:", env.get("TOOLQ_REDIS_URL", "")):
        f.fail("gateway: TOOLQ_REDIS_URL does not log in as the ACL user gateway")
    key_file = env.get("TOOLQ_SERVE__JWT_SECRET_FILE", "")
    mounted = {s if isinstance(s, str) else s.get("source") for s in gateway.get("secrets", [])}
    if not (key_file.startswith("/run/secrets/") and key_file.split("/")[-1] in mounted):
        f.fail(f"gateway: TOOLQ_SERVE__JWT_SECRET_FILE {key_file!r} is not one of its secrets")
    if "ports" in nginx and not any(str(p).endswith(":443") for p in nginx["ports"]):
        f.fail("nginx does not publish 443")
    if not any(str(v).startswith("./ops/nginx/toolq.conf:") for v in nginx.get("volumes", [])):
        f.fail("nginx does not mount ops/nginx/toolq.conf")
    for name, svc in services.items():
        for s in svc.get("secrets", []):
            src = s if isinstance(s, str) else s.get("source")
            if src not in secrets:
                f.fail(f"{name} uses secret {src}, which is not declared")
    ignore = (ROOT / "ops/secrets/.gitignore").read_text() if (ROOT / "ops/secrets/.gitignore").exists() else ""
    for name, sec in secrets.items():
        path = str(sec.get("file", ""))
        if not path.startswith("./ops/secrets/") or "*" not in ignore.split():
            f.fail(f"secret {name}: {path!r} is not in ops/secrets/, which git ignores")
    f.note(f"gateway: `serve`, unpublished, JWT key from /run/secrets; nginx in front; "
           f"{len(secrets)} secret files in ops/secrets/ (git-ignored)")


def struct_fields(path: Path, struct: str) -> list[str]:
    """The field names of `struct` (pub or not) in a Rust source file, less
    those serde skips (`#[serde(skip)]`: no key)."""
    m = re.search(r"struct %s \{(.*?)\n\}" % struct, path.read_text(), re.S)
    if not m:
        return []
    body = re.sub(r"#\[serde\(skip\)\]\s*(?:pub )?\w+:", "", m.group(1))
    return re.findall(r"^\s*(?:pub )?(\w+):", body, re.M)


def other_variables() -> set[str]:
    """The TOOLQ_ names that are no key but that toolq lets through (its
    own, the scripts' and the tests'), as src/config/variables.rs lists them."""
    code = VARIABLES_RS.read_text().split("#[cfg(test)]")[0]
    return set(re.findall(r'"(TOOLQ_[A-Z0-9_]*[A-Z0-9])"', code))


def worker_env_names() -> set[str]:
    """The TOOLQ_* variable of every configuration key but the gateway's,
    read from the Config struct (and the weather tool's) so that this check
    follows the code."""
    # `tools` and `mcp` are tables keyed by a tool's or a server's name
    # (`[tools.<name>]`, `[mcp.servers.<name>]`): no single variable to pass.
    # `serve` is the gateway's table (serve_env_names); `schedules` an array
    # of tables (`[[schedules]]`).
    tables = {"tools", "mcp", "serve", "schedules"}
    names = {f"TOOLQ_{k.upper()}" for k in struct_fields(CONFIG_RS, "Config") if k not in tables}
    # The keys serde reads: the raw struct behind WeatherConfig's try_from,
    # less the old spellings kept only for compatibility.
    legacy = {"timeout", "cache_ttl"}
    names |= {f"TOOLQ_TOOLS__WEATHER__{k.upper()}"
              for k in struct_fields(WEATHER_CONFIG_RS, "RawWeatherConfig") if k not in legacy}
    return names


def serve_env_names() -> set[str]:
    """TOOLQ_SERVE__<KEY> for every key of `[serve]` (`toolq serve`)."""
    return {f"TOOLQ_SERVE__{k.upper()}" for k in struct_fields(SERVE_CONFIG_RS, "ServeConfig")}


def config_env_names() -> set[str]:
    """Every TOOLQ_* variable toolq reads."""
    return worker_env_names() | serve_env_names()


def passed_through() -> set[str]:
    """Variables a compose service takes from .env by name (no value)."""
    services = yaml.safe_load(COMPOSE.read_text()).get("services", {})
    return {k for svc in services.values() for k, v in env_items(svc.get("environment"))
            if v == ""}


def check_env(f: Findings) -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    for var in REQUIRED_ENV:
        if var not in documented:
            f.fail(f".env.example does not document {var}")
    known = config_env_names()
    if len(worker_env_names()) < 10 or len(serve_env_names()) < 5:
        f.fail(f"could not read the Config fields from {CONFIG_RS} or {SERVE_CONFIG_RS}")
    # What .env can set: every worker setting (the worker passes each through)
    # and whatever another service passes through. The gateway's [serve]
    # keys are set in docker-compose.yml or the config file, so a copy in
    # .env would do nothing.
    for var in sorted(worker_env_names() - documented):
        f.fail(f".env.example does not document {var} (a key of src/config/mod.rs)")
    for var in sorted(passed_through() - documented):
        f.fail(f".env.example does not document {var}, which docker-compose.yml passes through")
    # toolq refuses TOOLQ_ names that are no key (start-up fails): these
    # files must not hand it one.
    others = other_variables()
    if "TOOLQ_PROFILE" not in others:
        f.fail(f"could not read the non-key TOOLQ_ names from {VARIABLES_RS}")
    for path in (ENV_EXAMPLE, COMPOSE, DOCKERFILE):
        for var in sorted(set(re.findall(r"\bTOOLQ_[A-Z0-9_]+", path.read_text()))):
            if var not in known and var not in others:
                f.fail(f"{path.name} sets {var}, which is no configuration key")
    f.note(f"{len(documented)} variables documented; {len(known)} configuration keys checked")


# ---- Dockerfile -----------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def check_dockerfile(f: Findings) -> None:
    instrs = dockerfile_instructions()
    froms = [i for i, (w, _) in enumerate(instrs) if w == "FROM"]
    if not froms:
        f.fail("Dockerfile has no FROM")
        return
    final = instrs[froms[-1]:]
    f.note(f"{len(froms)} stages; final stage: FROM {final[0][1]}")
    users = [a for w, a in final if w == "USER"]
    if not users:
        f.fail("final stage has no USER: it would run as root")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0", ""):
            f.fail(f"final stage runs as {users[-1]!r}")
        else:
            f.note(f"final stage runs as USER {users[-1]}")
    for want in ("HEALTHCHECK", "STOPSIGNAL", "ENTRYPOINT"):
        if not any(w == want for w, _ in final):
            f.fail(f"final stage has no {want}")


# ---- link/hot-text.txt -------------------------------------------------------------

def check_hot_text(f: Findings) -> None:
    """A list recorded for other dependencies orders few functions of the
    release build, and the worker's memory grows back without any error:
    this makes a Cargo.lock change without a new recording fail here."""
    lines = HOT_TEXT.read_text().splitlines()
    header = {k.strip(): v.strip() for k, _, v in
              (l[1:].partition(":") for l in lines if l.startswith("#")) if v}
    names = [l for l in lines if l and not l.startswith("#")]
    lock = hashlib.sha256(CARGO_LOCK.read_bytes()).hexdigest()
    if header.get("Cargo.lock sha256") != lock:
        f.fail(f"{HOT_TEXT.name} was recorded for another Cargo.lock "
               f"({header.get('Cargo.lock sha256')} against {lock}): "
               "run bash scripts/hot-text.sh")
    else:
        f.note(f"{HOT_TEXT.name} recorded for this Cargo.lock ({lock})")
    rustc = re.match(r"rustc (\d+\.\d+\.\d+) ", header.get("rustc", ""))
    builder = [a for w, a in dockerfile_instructions() if w == "FROM" and a.startswith("rust:")]
    want = f"rust:{rustc.group(1)}-" if rustc else None
    if not rustc or not builder or not builder[0].startswith(want):
        f.fail(f"the Dockerfile builds with {builder[:1]}, {HOT_TEXT.name} was "
               f"recorded with {header.get('rustc')!r}: the names would not match")
    else:
        f.note(f"Dockerfile builds with {builder[0].split()[0]}, as recorded")
    # The names are those of `cargo build-static` (`--target`, glibc linked
    # in): a Dockerfile building otherwise ships an unordered binary.
    alias = tomllib.loads(CARGO_CONFIG.read_text()).get("alias", {}).get("build-static", [])
    if "--target" not in alias or not any("+crt-static" in a for a in alias):
        f.fail(f"{CARGO_CONFIG.name}: the build-static alias builds no static binary for a --target")
    runs = [a for w, a in dockerfile_instructions() if w == "RUN"]
    if not any("cargo build-static" in a for a in runs):
        f.fail(f"the Dockerfile does not build with `cargo build-static`, the build {HOT_TEXT.name} names")
    else:
        f.note("Dockerfile builds with `cargo build-static`")
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_.$][0-9A-Za-z_$.@]*", n)]
    if bad:
        f.fail(f"not a symbol name: {bad[:3]}")
    if len(set(names)) != len(names):
        f.fail(f"{len(names) - len(set(names))} names listed twice")
    if len(names) < 500:
        f.fail(f"only {len(names)} names: the recording did not run a worker")
    f.note(f"{len(names)} functions listed")


# ---- Redis ACL ------------------------------------------------------------------

FORBIDDEN_RULES = {"allkeys", "~*", "%R~*", "%W~*", "%RW~*", "allcommands", "+@all",
                   "+@dangerous", "+@admin", "+flushall", "+flushdb", "+config",
                   "+keys", "+debug", "+shutdown", "+acl", "+module", "nopass",
                   "allchannels", "&*"}


def check_acl(f: Findings) -> None:
    users = {}
    for n, line in enumerate(ACL.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if parts[0] != "user" or len(parts) < 3:
            f.fail(f"users.acl:{n}: not `user <name> <rules>` (the file allows no comments)")
            continue
        users[parts[1]] = parts[2:]
    f.note("users: " + ", ".join(users))
    if "off" not in users.get("default", []):
        f.fail("the default user is not `off`")
    for name in ("worker", "producer", "gateway", "monitor"):
        if name not in users:
            f.fail(f"user {name} is missing")
    for name, rules in users.items():
        # Redis 7 selectors, `(~pattern +cmd ...)`, are checked token by
        # token like the root rules.
        rules = [r.strip("()") for r in rules]
        for r in rules:
            if r.lower() in FORBIDDEN_RULES:
                f.fail(f"user {name}: rule {r} is too broad")
            if r.startswith(">") and not r.startswith(">change-me-"):
                f.fail(f"user {name}: a plaintext password that is not a change-me- placeholder")
            if r.startswith("#") and not re.fullmatch(r"#[0-9a-f]{64}", r):
                f.fail(f"user {name}: {r[:8]}… is not a sha256 hex hash")
        if name != "default" and not any(re.match(r"(%R|%W|%RW)?~", r) for r in rules):
            f.fail(f"user {name}: no key pattern")


def check_config(f: Findings) -> None:
    """config/toolq.toml lists every key, commented at its default, in its
    section; the keys are read from the structs, so this follows the code."""
    sections: dict[str, set[str]] = {}
    section = ""
    for line in CONFIG_TOML.read_text().splitlines():
        header = re.match(r"^#?\s*\[\[?([a-z0-9_.]+)\]\]?\s*(#.*)?$", line)
        if header:
            # `[tools.http.<name>]`, `[mcp.servers.<name>]`: any name.
            section = re.sub(r"^(tools\.http|mcp\.servers)\.[a-z0-9_]+$", r"\1.*", header.group(1))
            continue
        key = re.match(r"^#?\s*([a-z_][a-z0-9_]*)\s*=", line)
        if key:
            sections.setdefault(section, set()).add(key.group(1))
    legacy = {"timeout", "cache_ttl"}
    expected = {
        "": [k for k in struct_fields(CONFIG_RS, "Config")
             if k not in {"tools", "mcp", "serve", "schedules"}],
        "serve": struct_fields(SERVE_CONFIG_RS, "ServeConfig"),
        "tools.weather": [k for k in struct_fields(WEATHER_CONFIG_RS, "RawWeatherConfig")
                          if k not in legacy],
        "tools.http.*": struct_fields(HTTP_TOOL_RS, "HttpToolConfig"),
        "mcp.servers.*": struct_fields(MCP_CONFIG_RS, "McpServerConfig"),
        "schedules": struct_fields(SCHEDULE_RS, "Definition"),
    }
    total = 0
    for name, keys in expected.items():
        if len(keys) < 3:
            f.fail(f"could not read the keys of [{name or 'top level'}] from the source")
        for key in keys:
            total += 1
            if key not in sections.get(name, set()):
                where = f"[{name}]" if name else "the top level"
                f.fail(f"config/toolq.toml does not document `{key}` in {where}")
    f.note(f"{total} keys in {len(expected)} sections documented in config/toolq.toml")


CHECKS = {
    "metrics": check_metrics,
    "dashboard": check_dashboard,
    "alerts": check_alerts,
    "compose": check_compose,
    "env": check_env,
    "config": check_config,
    "dockerfile": check_dockerfile,
    "acl": check_acl,
    "hot-text": check_hot_text,
}


def main(argv: list[str]) -> None:
    f = Findings()
    if len(argv) == 3 and argv[1] == "dashboard-rules":
        write_dashboard_rules(f, argv[2])
    elif len(argv) == 2 and argv[1] in CHECKS:
        CHECKS[argv[1]](f)
    else:
        sys.exit(__doc__)
    f.exit()


if __name__ == "__main__":
    main(sys.argv)
