//! The shipped ops files against a real Prometheus scraping a real worker:
//! `ops/prometheus.yml` (intervals and targets rewritten for the test) loads
//! `ops/alerts.yml` and every rule evaluates cleanly; the worker runs jobs
//! that succeed, retry and die; then every PromQL expression of the Grafana
//! dashboard is evaluated and must return data. A query naming a metric the
//! worker does not export comes back empty, and the checker reports it.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`, installed by
//! `ops/check.sh`); without it this test fails and says so.

mod common;
mod obs_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use obs_support::prometheus::{ops_dir, Prometheus};
use serde_json::{json, Value};
use toolq::redis_server::free_port;
use toolq::tools::{JobContext, Registry, Tool, ToolError};

const WAIT: Duration = Duration::from_secs(20);
/// What the dashboard's Grafana-only variables stand for in the test. The
/// rate window is many 1 s scrapes wide, as `$__rate_interval` always is.
const BUILTINS: &[(&str, &str)] = &[
    ("$__rate_interval", "15s"),
    ("$__interval", "5s"),
    ("$__range", "5m"),
];

/// A tool with a cache TTL, so the worker exports cache series for it (the
/// built-in ones have none; `weather` would need an API key).
struct Cached;

#[async_trait]
impl Tool for Cached {
    fn name(&self) -> &str {
        "cached"
    }
    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        Ok(args.clone())
    }
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_return_data_and_alert_rules_load_in_a_real_prometheus() {
    obs_support::prometheus::binary();
    let server = redis();
    let q = queue_name("prom");
    let http_port = free_port().unwrap();
    let mut cfg = config(&server.url(), &q, 4);
    cfg.http_addr = format!("127.0.0.1:{http_port}");
    let mut registry = Registry::with_builtins();
    registry.register(Cached);
    let worker = start_worker_with(cfg, registry);

    let alerts = std::fs::read_to_string(ops_dir().join("alerts.yml")).unwrap();
    let prom = Prometheus::start(&test_config(http_port), &[("alerts.yml", alerts.clone())]).await;
    wait_for(&prom, "the worker scraped", "up{job=\"toolq\"}", 1.0).await;

    let finished = run_jobs(&server.url(), &q).await;
    let total = format!("sum(toolq_jobs_finished_total{{queue=\"{q}\"}})");
    wait_for(&prom, "every outcome scraped", &total, finished).await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(ops_dir().join("grafana/dashboards/toolq.json")).unwrap(),
    )
    .unwrap();
    check_template_variables(&prom, &dashboard, &q).await;
    let vars = [("$queue", q.as_str())];
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "found only {} queries", queries.len());
    let (failures, results) = check_queries(&prom, &queries, &vars).await;
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );
    let outcomes: BTreeSet<&str> = results
        .iter()
        .find(|(title, _)| title.as_str() == "Throughput by outcome")
        .expect("a throughput panel")
        .1
        .iter()
        .filter_map(|s| s["metric"]["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["dead", "retrying", "succeeded"].into());

    checker_reports_metrics_we_do_not_export(&prom, &queries, &vars).await;
    alert_rules_load_and_evaluate(&prom, &alerts, &q).await;
    worker.stop().await;
}

/// `ops/prometheus.yml` with a 1 s scrape and evaluation interval and the
/// worker's real port, so what is tested is the shipped file, not a copy.
fn test_config(worker_port: u16) -> String {
    let shipped = std::fs::read_to_string(ops_dir().join("prometheus.yml")).unwrap();
    let mut config = shipped.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_owned(),
        ),
        ("\"127.0.0.1:9464\"", format!("\"127.0.0.1:{worker_port}\"")),
        // Kept as is: the rule file is written next to the config.
        ("- alerts.yml", "- alerts.yml".to_owned()),
    ] {
        assert!(
            shipped.contains(from),
            "ops/prometheus.yml no longer contains {from:?}; update this test"
        );
        config = config.replace(from, &to);
    }
    config
}

/// Jobs of every outcome; returns how many attempts finish in all.
async fn run_jobs(url: &str, q: &str) -> f64 {
    let mut con = raw(url).await;
    let now = redis_time_ms(&mut con).await;
    let job = |tool: &str, args: Value, id: String, attempts: u32| {
        json!({"tool": tool, "args": args, "id": id, "max_attempts": attempts, "enqueued_at": now})
            .to_string()
    };
    let mut jobs = Vec::new();
    let mut ids = Vec::new();
    let mut add = |tool: &str, args: Value, n: usize, attempts: u32| {
        for i in 0..n {
            let id = format!("{tool}-{}-{i}", ids.len());
            jobs.push(job(tool, args.clone(), id.clone(), attempts));
            ids.push(id);
        }
    };
    add("echo", json!({"x": 1}), 20, 3); // 20 succeeded
    add("calculator", json!({"expression": "1+2"}), 5, 3); // 5 succeeded
    add("cached", json!({"y": 2}), 3, 3); // 3 succeeded
    add("fail", json!({"times": 1}), 4, 3); // 4 retried, 4 succeeded
    add("fail", json!({"permanent": true}), 3, 3); // 3 dead
    add("fail", json!({"times": 5}), 2, 2); // 2 retried, 2 dead
    jobs.push("not a job".into()); // 1 dead (_invalid)
    lpush(&mut con, q, &jobs).await;
    for id in &ids {
        wait_result(&mut con, q, id, WAIT).await;
    }
    (20 + 5 + 3 + 8 + 3 + 4 + 1) as f64
}

/// Polls `expr` until it equals `want`.
async fn wait_for(prom: &Prometheus, what: &str, expr: &str, want: f64) {
    let start = Instant::now();
    loop {
        let got = prom.scalar(expr).await;
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{what}: `{expr}` is {got:?}, not {want}; prometheus log:\n{}",
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// (panel title, expression) for every target of every panel, rows and
/// collapsed rows included.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.clone(), expr.to_owned()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Replaces the dashboard's variables; an unknown one is an error, since
/// Grafana would send it to Prometheus literally.
fn substitute(expr: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = expr.to_owned();
    for (name, value) in vars.iter().chain(BUILTINS) {
        let braced = format!("${{{}}}", &name[1..]);
        out = out.replace(&braced, value).replace(name, value);
    }
    match out.find('$') {
        Some(i) => Err(format!("unknown template variable at {:?}", &out[i..])),
        None => Ok(out),
    }
}

/// Every query that errs or returns nothing, as a line naming its panel;
/// and each query's result.
async fn check_queries(
    prom: &Prometheus,
    queries: &[(String, String)],
    vars: &[(&str, &str)],
) -> (Vec<String>, Vec<(String, Vec<Value>)>) {
    let mut failures = Vec::new();
    let mut results = Vec::new();
    for (title, expr) in queries {
        let outcome = match substitute(expr, vars) {
            Ok(q) => prom.query(&q).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(r) if !r.is_empty() => results.push((title.clone(), r)),
            Ok(_) => failures.push(format!("  {title}: `{expr}` returned no data")),
            Err(e) => failures.push(format!("  {title}: `{expr}` failed: {e}")),
        }
    }
    (failures, results)
}

/// The dashboard's query variables (`label_values(metric, label)`) must list
/// the test queue, or every panel filtered by them would be empty in Grafana.
async fn check_template_variables(prom: &Prometheus, dashboard: &Value, q: &str) {
    let vars = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        // Grafana keeps the query in `definition`, in `query` (a string), or
        // in `query.query` (its Prometheus query editor), by version.
        let def = [&v["definition"], &v["query"], &v["query"]["query"]]
            .into_iter()
            .find_map(|d| d.as_str().filter(|d| !d.is_empty()))
            .unwrap_or_default();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: unsupported query {def:?}", v["name"]));
        let (metric, label) = inner.split_once(',').expect("label_values(metric, label)");
        let data = prom
            .api(
                &format!("label/{}/values", label.trim()),
                &[("match[]", metric.trim())],
            )
            .await
            .unwrap();
        assert!(
            data.as_array()
                .is_some_and(|vals| vals.iter().any(|x| x == q)),
            "variable {}: {def} does not list {q}: {data}",
            v["name"]
        );
    }
}

/// The checker's own test: each query with its metric names replaced by
/// one the worker does not export must come back empty and be reported, or
/// the check above could not catch a renamed metric (e.g. a query padded
/// with `or vector(0)`).
async fn checker_reports_metrics_we_do_not_export(
    prom: &Prometheus,
    queries: &[(String, String)],
    vars: &[(&str, &str)],
) {
    let mutated: Vec<(String, String)> = queries
        .iter()
        .map(|(title, expr)| (title.clone(), rename_metrics(expr)))
        .collect();
    let (failures, still_data) = check_queries(prom, &mutated, vars).await;
    assert_eq!(
        failures.len(),
        queries.len(),
        "queries that return data without our metrics: {:?}",
        still_data.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    assert!(
        failures[0].contains("toolq_not_exported_") && failures[0].contains("returned no data"),
        "{}",
        failures[0]
    );
}

/// `toolq_jobs_finished_total` → `toolq_not_exported_jobs_finished_total`.
fn rename_metrics(expr: &str) -> String {
    let renamed = expr.replace("toolq_", "toolq_not_exported_");
    assert_ne!(
        renamed, expr,
        "a dashboard query without a toolq metric: {expr}"
    );
    renamed
}

/// Every rule of `ops/alerts.yml` is loaded and evaluates without error;
/// the dead jobs of this run fire `ToolqDeadJobsGrowing` for the queue.
async fn alert_rules_load_and_evaluate(prom: &Prometheus, alerts: &str, q: &str) {
    let expected = alerts.matches("- alert:").count();
    assert!(expected >= 6, "ops/alerts.yml has {expected} alerts");
    let start = Instant::now();
    loop {
        let data = prom.api("rules", &[]).await.unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let bad: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if rules.len() == expected && bad.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "{} of {expected} rules loaded; not ok: {bad:?}\nprometheus log:\n{}",
            rules.len(),
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start = Instant::now();
    loop {
        let data = prom.api("alerts", &[]).await.unwrap();
        let firing = data["alerts"].as_array().into_iter().flatten().any(|a| {
            a["labels"]["alertname"] == "ToolqDeadJobsGrowing"
                && a["labels"]["queue"] == q
                && a["state"] == "firing"
        });
        if firing {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "ToolqDeadJobsGrowing not firing for {q}: {data}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
