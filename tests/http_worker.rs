//! The side port of a running worker (in-process, real redis-server, real
//! sockets): every endpoint's status and body, readiness following a Redis
//! outage and recovery, counters moving by exactly the jobs run, queue depth
//! by state, and no job id in any metric.

mod common;
mod obs_support;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use obs_support::text::{parse, value, Sample};
use reqwest::{header::CONTENT_TYPE, Client, StatusCode};
use serde_json::{json, Value};
use toolq::health::metrics as m;
use toolq::queue::QueueKeys;
use toolq::redis_server::free_port;

const WAIT: Duration = Duration::from_secs(20);

/// A worker serving `queue` with its side port on a free local port.
fn start(url: &str, queue: &str, concurrency: usize) -> (RunningWorker, String) {
    let port = free_port().unwrap();
    let mut cfg = config(url, queue, concurrency);
    cfg.http_addr = format!("127.0.0.1:{port}");
    cfg.shutdown_grace_s = 1;
    (start_worker(cfg), format!("http://127.0.0.1:{port}"))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str) -> (StatusCode, String) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

async fn get_json(base: &str, path: &str) -> (StatusCode, Value) {
    let (status, body) = get(base, path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

async fn scrape(base: &str) -> Vec<Sample> {
    let (status, body) = get(base, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    parse(&body)
}

/// Waits until `/readyz` answers `status` (the side port may not be bound yet).
async fn wait_ready(base: &str, status: StatusCode, within: Duration) {
    eventually(within, &format!("/readyz {status}"), || async move {
        match client().get(format!("{base}/readyz")).send().await {
            Ok(r) => r.status() == status,
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test]
async fn every_endpoint_answers_with_its_status_and_body() {
    let server = redis();
    let q = queue_name("http");
    let (worker, base) = start(&server.url(), &q, 3);
    wait_ready(&base, StatusCode::OK, WAIT).await;

    let (status, body) = get_json(&base, "/readyz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
    let (status, body) = get_json(&base, "/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    // /health lists the queue once the monitor has run a round.
    eventually(WAIT, "queues in /health", || {
        let base = base.clone();
        let q = q.clone();
        async move {
            let (_, h) = get_json(&base, "/health").await;
            h["queues"]
                .as_array()
                .is_some_and(|qs| qs.iter().any(|x| x["name"] == q))
        }
    })
    .await;
    let (status, health) = get_json(&base, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["worker_id"], worker.health.worker_id.as_str());
    assert!(health["uptime_s"].is_u64(), "{health}");
    assert_eq!(health["redis"]["ok"], true);
    assert!(
        health["redis"]["ping_ms"].as_f64().is_some_and(|p| p > 0.0),
        "{health}"
    );
    assert_eq!(health["in_flight"], 0);
    assert_eq!(health["concurrency"], 3);
    assert_eq!(health["shutting_down"], false);
    assert!(
        health["heartbeat_age_ms"]
            .as_u64()
            .is_some_and(|a| a <= 5000),
        "{health}"
    );
    assert_eq!(
        health["queues"][0],
        json!({"name": q, "pending": 0, "active": 0, "delayed": 0, "dead": 0})
    );

    let r = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let samples = parse(&r.text().await.unwrap());
    assert!(samples.iter().any(|s| s.name == m::WORKER_UP));
    assert_eq!(
        value(
            &samples,
            m::WORKER_INFO,
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, m::WORKERS_LIVE, &[("queue", q.as_str())]),
        Some(1.0)
    );

    let (status, body) = get_json(&base, "/nope").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "not found"}))
    );
    let r = client()
        .post(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // While a job holds the stop sequence open, /readyz says why not ready.
    let mut con = raw(&server.url()).await;
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "sleep", "args": {"ms": 30000}, "id": "long"}).to_string()],
    )
    .await;
    eventually(WAIT, "the sleep job running", || async {
        worker.health.in_flight() == 1
    })
    .await;
    worker.shutdown.begin();
    wait_ready(&base, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let (_, body) = get_json(&base, "/readyz").await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "failing": "shutting_down"})
    );
    tokio::time::timeout(Duration::from_secs(30), worker.handle)
        .await
        .expect("worker stops")
        .unwrap()
        .unwrap();
    // The interrupted job went back to pending.
    assert_eq!(llen(&mut con, &QueueKeys::new(&q).pending).await, 1);
}

#[tokio::test]
async fn readyz_fails_on_redis_while_it_is_down_and_recovers_on_its_own() {
    let mut server = redis();
    let q = queue_name("outage");
    let (worker, base) = start(&server.url(), &q, 2);
    wait_ready(&base, StatusCode::OK, WAIT).await;

    server.stop();
    wait_ready(&base, StatusCode::SERVICE_UNAVAILABLE, WAIT).await;
    let (status, body) = get_json(&base, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"status": "not_ready", "failing": "redis"}));
    let (status, health) = get_json(&base, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health["status"], "down");
    assert_eq!(health["redis"]["ok"], false);
    assert_eq!(health["redis"]["ping_ms"], Value::Null);
    // Liveness does not depend on Redis: restarting the pod would not help.
    assert_eq!(get(&base, "/healthz").await.0, StatusCode::OK);
    let errors = value(&scrape(&base).await, m::REDIS_ERRORS, &[]).unwrap();
    assert!(errors >= 1.0, "redis errors counted: {errors}");

    server.restart().unwrap();
    wait_ready(&base, StatusCode::OK, Duration::from_secs(30)).await;
    let (_, body) = get_json(&base, "/readyz").await;
    assert_eq!(body, json!({"status": "ready"}));
    // And it runs jobs again, without anyone touching it.
    let mut con = raw(&server.url()).await;
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {"x": 1}, "id": "after"}).to_string()],
    )
    .await;
    let r = wait_result(&mut con, &q, "after", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    worker.stop().await;
}

#[tokio::test]
async fn counters_rise_by_exactly_the_jobs_run_and_no_metric_carries_a_job_id() {
    let server = redis();
    let q = queue_name("count");
    let (worker, base) = start(&server.url(), &q, 8);
    wait_ready(&base, StatusCode::OK, WAIT).await;
    let succeeded = [
        ("queue", q.as_str()),
        ("tool", "echo"),
        ("outcome", "succeeded"),
    ];
    let before = scrape(&base).await;
    // Registered at start-up, before any job ran.
    assert_eq!(value(&before, m::JOBS_FINISHED, &succeeded), Some(0.0));

    let mut con = raw(&server.url()).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<String> = (0..100).map(|i| format!("job-{run}-{i}")).collect();
    let now = redis_time_ms(&mut con).await;
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| {
            json!({"tool": "echo", "args": {"id": id}, "id": id, "enqueued_at": now}).to_string()
        })
        .collect();
    lpush(&mut con, &q, &jobs).await;
    for id in &ids {
        assert_eq!(
            wait_result(&mut con, &q, id, WAIT).await["status"],
            "succeeded"
        );
    }
    let after = scrape(&base).await;
    assert_eq!(value(&after, m::JOBS_FINISHED, &succeeded), Some(100.0));
    for outcome in ["retrying", "dead"] {
        let labels = [
            ("queue", q.as_str()),
            ("tool", "echo"),
            ("outcome", outcome),
        ];
        assert_eq!(
            value(&after, m::JOBS_FINISHED, &labels),
            Some(0.0),
            "{outcome}"
        );
    }
    let echo = [("queue", q.as_str()), ("tool", "echo")];
    let duration_count = format!("{}_count", m::JOB_DURATION);
    let wait_count = format!("{}_count", m::JOB_WAIT);
    assert_eq!(value(&after, &duration_count, &echo), Some(100.0));
    assert_eq!(value(&after, &wait_count, &echo), Some(100.0));
    assert_eq!(value(&after, m::JOB_RETRIES, &echo), Some(0.0));
    assert_eq!(
        value(&after, m::JOBS_IN_FLIGHT, &[("queue", q.as_str())]),
        Some(0.0)
    );

    // Labels are the documented low-cardinality ones; no id anywhere.
    let allowed: HashSet<&str> = ["queue", "tool", "outcome", "state", "version", "le"].into();
    let (_, text) = get(&base, "/metrics").await;
    for s in &after {
        for k in s.labels.keys() {
            assert!(allowed.contains(k.as_str()), "label {k} on {s:?}");
        }
    }
    assert!(!text.contains(&run), "a job id leaked into /metrics");
    assert!(
        !text.contains(&worker.health.worker_id),
        "the worker id is not a label either"
    );
    worker.stop().await;
}

#[tokio::test]
async fn queue_depth_is_reported_by_state() {
    let server = redis();
    let q = queue_name("depth");
    let keys = QueueKeys::new(&q);
    let (worker, base) = start(&server.url(), &q, 1);
    wait_ready(&base, StatusCode::OK, WAIT).await;
    let mut con = raw(&server.url()).await;

    // dead = 2: payloads that are not jobs are buried at once.
    lpush(
        &mut con,
        &q,
        &["not json".into(), r#"{"tool":"nope","args":{}}"#.into()],
    )
    .await;
    eventually(WAIT, "two dead", || {
        let mut con = con.clone();
        let dead = keys.dead.clone();
        async move { zcard(&mut con, &dead).await == 2 }
    })
    .await;
    // active = 1: the only slot is held by a long job...
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "sleep", "args": {"ms": 60000}, "id": "hold"}).to_string()],
    )
    .await;
    eventually(WAIT, "the slot taken", || async {
        worker.health.in_flight() == 1
    })
    .await;
    // ...so pending = 5 stays pending, and delayed = 3 are due in an hour.
    let echo = |i: u32| json!({"tool": "echo", "args": {"i": i}}).to_string();
    lpush(&mut con, &q, &(0..5).map(echo).collect::<Vec<_>>()).await;
    let producer = broker(&server.url());
    let later = redis_time_ms(&mut con).await + 3_600_000;
    for i in 0..3 {
        producer
            .schedule(&keys, &echo(100 + i), later)
            .await
            .unwrap();
    }

    let want = [
        ("pending", 5.0),
        ("active", 1.0),
        ("delayed", 3.0),
        ("dead", 2.0),
    ];
    eventually(WAIT, "depth gauges", || {
        let base = base.clone();
        let q = q.clone();
        async move {
            let s = scrape(&base).await;
            want.iter().all(|(state, n)| {
                value(
                    &s,
                    m::QUEUE_DEPTH,
                    &[("queue", q.as_str()), ("state", state)],
                ) == Some(*n)
            })
        }
    })
    .await;
    let (_, health) = get_json(&base, "/health").await;
    assert_eq!(
        health["queues"][0],
        json!({"name": q, "pending": 5, "active": 1, "delayed": 3, "dead": 2})
    );
    let s = scrape(&base).await;
    assert_eq!(
        value(&s, m::JOBS_IN_FLIGHT, &[("queue", q.as_str())]),
        Some(1.0)
    );
    let dead = [
        ("queue", q.as_str()),
        ("tool", toolq::worker::INVALID_TOOL_LABEL),
    ];
    assert_eq!(value(&s, m::JOBS_DEAD, &dead), Some(2.0));
    worker.stop().await;
}

#[tokio::test]
async fn wait_time_counts_first_attempts_from_the_later_of_enqueue_and_due_time() {
    let server = redis();
    let q = queue_name("wait");
    let (worker, base) = start(&server.url(), &q, 4);
    wait_ready(&base, StatusCode::OK, WAIT).await;
    let mut con = raw(&server.url()).await;
    let now = redis_time_ms(&mut con).await;
    let jobs = [
        // Two attempts, one wait: the retry's backoff is not queueing.
        json!({"tool": "fail", "args": {"times": 1}, "id": "retried", "enqueued_at": now}),
        // Enqueued an hour ago for a time just ahead: it waited ~0 s, not 1 h.
        json!({"tool": "calculator", "args": {"expression": "1"}, "id": "scheduled",
               "enqueued_at": now - 3_600_000, "run_at": now + 300}),
    ];
    lpush(&mut con, &q, &jobs.map(|j| j.to_string())).await;
    for id in ["retried", "scheduled"] {
        assert_eq!(
            wait_result(&mut con, &q, id, WAIT).await["status"],
            "succeeded"
        );
    }
    let s = scrape(&base).await;
    let (count, sum) = (
        format!("{}_count", m::JOB_WAIT),
        format!("{}_sum", m::JOB_WAIT),
    );
    let fail = [("queue", q.as_str()), ("tool", "fail")];
    assert_eq!(value(&s, &count, &fail), Some(1.0));
    assert_eq!(
        value(&s, &format!("{}_count", m::JOB_DURATION), &fail),
        Some(2.0)
    );
    let calc = [("queue", q.as_str()), ("tool", "calculator")];
    assert_eq!(value(&s, &count, &calc), Some(1.0));
    let waited = value(&s, &sum, &calc).unwrap();
    assert!(waited < 60.0, "scheduled job waited {waited} s");
    worker.stop().await;
}
