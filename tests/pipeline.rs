//! The core pipeline against a real redis-server: jobs pushed with plain
//! LPUSH run, the concurrency cap holds, retries, dead jobs, malformed
//! payloads, scheduled jobs and result expiry.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::{json, Value};
use toolq::queue::QueueKeys;
use toolq::tools::{JobContext, Registry, Tool, ToolError};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_job_pushed_with_plain_lpush_runs_and_its_result_is_readable() {
    let server = redis();
    let q = queue_name("lpush");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    lpush(&mut con, &q, &[r#"{"tool":"calculator","args":{"expression":"2*(3+4)"},"id":"job-1","meta":{"who":"test"}}"#.into()]).await;
    let r = wait_result(&mut con, &q, "job-1", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["output"]["result"], 14);
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["meta"], json!({"who": "test"}));
    assert_eq!(r["cached"], false);
    assert!(r["worker"].as_str().is_some_and(|w| !w.is_empty()));
    // Without an id the worker assigns one; the result is stored under it.
    lpush(&mut con, &q, &[r#"{"tool":"echo","args":{"n":1}}"#.into()]).await;
    let keys = QueueKeys::new(&q);
    eventually(WAIT, "an auto-id result", || {
        let mut con = con.clone();
        let pattern = keys.result("*");
        async move {
            let found: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut con)
                .await
                .unwrap();
            found.len() == 2
        }
    })
    .await;
    worker.stop().await;
}

#[tokio::test]
async fn never_more_jobs_at_once_than_the_concurrency_cap() {
    let server = redis();
    let q = queue_name("cap");
    let mut con = raw(&server.url()).await;
    let cap = 4;
    let worker = start_worker(config(&server.url(), &q, cap));
    let jobs: Vec<String> = (0..24)
        .map(|i| json!({"tool": "sleep", "args": {"ms": 150}, "id": format!("s{i}")}).to_string())
        .collect();
    lpush(&mut con, &q, &jobs).await;
    let mut spans = Vec::new();
    for i in 0..24 {
        let r = wait_result(&mut con, &q, &format!("s{i}"), WAIT).await;
        assert_eq!(r["status"], "succeeded");
        spans.push((
            r["started_at"].as_u64().unwrap(),
            r["finished_at"].as_u64().unwrap(),
        ));
    }
    // Most attempts overlapping at any start instant.
    let max_overlap = spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(s2, f2)| s2 <= s && s < f2).count())
        .max()
        .unwrap();
    assert_eq!(max_overlap, cap, "the cap is reached and never exceeded");
    worker.stop().await;
}

#[tokio::test]
async fn a_job_that_fails_twice_then_succeeds_ends_succeeded_after_three_attempts() {
    let server = redis();
    let q = queue_name("retry");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    lpush(
        &mut con,
        &q,
        &[
            json!({"tool": "fail", "args": {"times": 2}, "id": "f1", "max_attempts": 5})
                .to_string(),
        ],
    )
    .await;
    let r = wait_result(&mut con, &q, "f1", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["attempts"], 3);
    assert_eq!(r["recoveries"], 0);
    assert_eq!(zcard(&mut con, &QueueKeys::new(&q).dead).await, 0);
    worker.stop().await;
}

#[tokio::test]
async fn a_permanent_error_goes_to_dead_at_once_and_exhausted_attempts_too() {
    let server = redis();
    let q = queue_name("dead");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    lpush(
        &mut con,
        &q,
        &[
            json!({"tool": "fail", "args": {"permanent": true}, "id": "p1", "max_attempts": 5})
                .to_string(),
            json!({"tool": "fail", "args": {"times": 10}, "id": "x1", "max_attempts": 3})
                .to_string(),
        ],
    )
    .await;
    let p = wait_result(&mut con, &q, "p1", WAIT).await;
    assert_eq!(p["status"], "dead");
    assert_eq!(p["attempts"], 1);
    assert_eq!(p["error"]["kind"], "permanent");
    let x = wait_result(&mut con, &q, "x1", WAIT).await;
    assert_eq!(x["status"], "dead");
    assert_eq!(x["attempts"], 3);
    assert_eq!(x["error"]["kind"], "retryable");
    let dead = dead_entries(&mut con, &q).await;
    let ids: Vec<&str> = dead
        .iter()
        .filter_map(|d| d["job"]["id"].as_str())
        .collect();
    assert!(ids.contains(&"p1") && ids.contains(&"x1"), "{dead:?}");
    for d in &dead {
        assert!(d["died_at"].as_u64().is_some());
        assert!(d["error"]["message"].as_str().is_some());
    }
    worker.stop().await;
}

/// Every kind of bad payload, 1,000 in all, mixed with 1,000 good jobs.
#[tokio::test]
async fn malformed_payloads_are_buried_with_the_right_error_and_good_jobs_all_succeed() {
    let server = redis();
    let q = queue_name("malformed");
    let mut con = raw(&server.url()).await;
    let mut cfg = config(&server.url(), &q, 16);
    cfg.max_payload_bytes = 4096;
    cfg.max_json_depth = 16;
    let worker = start_worker(cfg);
    let big = "x".repeat(5000);
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    type MakePayload = Box<dyn Fn(usize) -> String>;
    let kinds: Vec<(&str, MakePayload)> = vec![
        ("invalid_json", Box::new(|i| format!("{{not json {i}"))),
        ("not_an_object", Box::new(|i| format!("[{i}, 2]"))),
        (
            "missing_field",
            Box::new(|i| json!({"args": {}, "n": i}).to_string()),
        ),
        (
            "missing_field",
            Box::new(|i| json!({"tool": "echo", "n": i}).to_string()),
        ),
        (
            "wrong_type",
            Box::new(|i| json!({"tool": 5, "args": {}, "n": i}).to_string()),
        ),
        (
            // An expiry Redis would refuse inside the batched ack.
            "wrong_type",
            Box::new(|i| {
                json!({"tool": "echo", "args": {}, "id": format!("t{i}"),
                       "result_ttl_s": 100_000_000_000_000_000u64})
                .to_string()
            }),
        ),
        (
            "unknown_tool",
            Box::new(|i| json!({"tool": "nope", "args": {}, "id": format!("u{i}")}).to_string()),
        ),
        (
            "invalid_args",
            Box::new(|i| {
                json!({"tool": "calculator", "args": {"expression": i}, "id": format!("a{i}")})
                    .to_string()
            }),
        ),
        (
            "too_large",
            Box::new(move |i| json!({"tool": "echo", "args": {"s": big}, "n": i}).to_string()),
        ),
        (
            "too_deep",
            Box::new(move |i| format!(r#"{{"tool":"echo","args":{{"d":{deep}}},"n":{i}}}"#)),
        ),
    ];
    let mut payloads = Vec::new();
    let mut expected: HashMap<&str, usize> = HashMap::new();
    for i in 0..1000 {
        let (kind, make) = &kinds[i % kinds.len()];
        payloads.push(make(i));
        *expected.entry(kind).or_default() += 1;
        payloads
            .push(json!({"tool": "echo", "args": {"i": i}, "id": format!("ok{i}")}).to_string());
    }
    lpush(&mut con, &q, &payloads).await;
    for i in 0..1000 {
        let r = wait_result(&mut con, &q, &format!("ok{i}"), WAIT).await;
        assert_eq!(r["status"], "succeeded");
        assert_eq!(r["output"], json!({"i": i}));
    }
    let keys = QueueKeys::new(&q);
    eventually(WAIT, "1000 dead entries", || {
        let mut con = con.clone();
        let dead = keys.dead.clone();
        async move { zcard(&mut con, &dead).await == 1000 }
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for d in dead_entries(&mut con, &q).await {
        let kind = d["error"]["kind"].as_str().unwrap().to_owned();
        assert!(!d["error"]["message"].as_str().unwrap().is_empty());
        *seen.entry(kind).or_default() += 1;
    }
    let expected: HashMap<String, usize> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(seen, expected);
    // Still running: a job pushed now succeeds.
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {}, "id": "after"}).to_string()],
    )
    .await;
    assert_eq!(
        wait_result(&mut con, &q, "after", WAIT).await["status"],
        "succeeded"
    );
    assert_eq!(llen(&mut con, &keys.pending).await, 0);
    worker.stop().await;
}

#[tokio::test]
async fn a_scheduled_job_does_not_run_before_its_time() {
    let server = redis();
    let q = queue_name("sched");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    let run_at = redis_time_ms(&mut con).await + 1500;
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {}, "id": "later", "run_at": run_at}).to_string()],
    )
    .await;
    let keys = QueueKeys::new(&q);
    eventually(WAIT, "the job parked in delayed", || {
        let (mut con, delayed) = (con.clone(), keys.delayed.clone());
        async move { zcard(&mut con, &delayed).await == 1 }
    })
    .await;
    assert_eq!(zcard(&mut con, &keys.delayed).await, 1, "parked in delayed");
    let r = wait_result(&mut con, &q, "later", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    assert!(r["started_at"].as_u64().unwrap() >= run_at, "{r}");
    worker.stop().await;
}

#[tokio::test]
async fn results_expire_and_ttl_zero_stores_none() {
    let server = redis();
    let q = queue_name("ttl");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    lpush(
        &mut con,
        &q,
        &[
            json!({"tool": "echo", "args": {}, "id": "short", "result_ttl_s": 1}).to_string(),
            json!({"tool": "echo", "args": {}, "id": "none", "result_ttl_s": 0}).to_string(),
            json!({"tool": "echo", "args": {}, "id": "default"}).to_string(),
        ],
    )
    .await;
    wait_result(&mut con, &q, "short", WAIT).await;
    let keys = QueueKeys::new(&q);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(keys.result("default"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 3_500_000 && ttl <= 3_600_000,
        "default TTL is one hour, got {ttl} ms"
    );
    eventually(Duration::from_secs(5), "the short result to expire", || {
        let mut con = con.clone();
        let key = keys.result("short");
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            !exists
        }
    })
    .await;
    let none: bool = redis::cmd("EXISTS")
        .arg(keys.result("none"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!none, "result_ttl_s 0 stores no result");
    let totals: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&keys.stats)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(totals.get("succeeded"), Some(&3));
    worker.stop().await;
}

#[tokio::test]
async fn the_dead_set_is_capped_by_count() {
    let server = redis();
    let q = queue_name("cap-dead");
    let mut con = raw(&server.url()).await;
    let mut cfg = config(&server.url(), &q, 4);
    cfg.dead_max_jobs = 10;
    let worker = start_worker(cfg);
    let jobs: Vec<String> = (0..25).map(|i| format!("[{i}]")).collect();
    lpush(&mut con, &q, &jobs).await;
    let keys = QueueKeys::new(&q);
    eventually(WAIT, "pending drained", || {
        let mut con = con.clone();
        let pending = keys.pending.clone();
        async move { llen(&mut con, &pending).await == 0 }
    })
    .await;
    eventually(WAIT, "ten burials", || {
        let (mut con, dead) = (con.clone(), keys.dead.clone());
        async move { zcard(&mut con, &dead).await >= 10 }
    })
    .await;
    assert_eq!(zcard(&mut con, &keys.dead).await, 10);
    worker.stop().await;
}

struct Panics;

#[async_trait]
impl Tool for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    async fn call(&self, _args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        panic!("tool bug")
    }
}

#[tokio::test]
async fn a_panicking_or_slow_tool_fails_the_attempt_not_the_worker() {
    let server = redis();
    let q = queue_name("panic");
    let mut con = raw(&server.url()).await;
    let mut registry = Registry::with_builtins();
    registry.register(Panics);
    let worker = start_worker_with(config(&server.url(), &q, 4), registry);
    lpush(&mut con, &q, &[
        json!({"tool": "panics", "args": {}, "id": "p", "max_attempts": 2}).to_string(),
        json!({"tool": "sleep", "args": {"ms": 2000}, "id": "slow", "timeout_ms": 50, "max_attempts": 2}).to_string(),
    ]).await;
    let p = wait_result(&mut con, &q, "p", WAIT).await;
    assert_eq!(p["status"], "dead");
    assert_eq!(p["error"]["kind"], "panic");
    assert_eq!(p["attempts"], 2);
    assert!(p["error"]["message"].as_str().unwrap().contains("tool bug"));
    let slow = wait_result(&mut con, &q, "slow", WAIT).await;
    assert_eq!(slow["status"], "dead");
    assert_eq!(slow["error"]["kind"], "timeout");
    assert!(slow["duration_ms"].as_f64().unwrap() < 1000.0);
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {}, "id": "alive"}).to_string()],
    )
    .await;
    assert_eq!(
        wait_result(&mut con, &q, "alive", WAIT).await["status"],
        "succeeded"
    );
    worker.stop().await;
}

#[tokio::test]
async fn strict_queue_order_drains_the_first_queue_first() {
    let server = redis();
    let (high, low) = (queue_name("high"), queue_name("low"));
    let mut con = raw(&server.url()).await;
    let job = |id: String| json!({"tool": "sleep", "args": {"ms": 5}, "id": id}).to_string();
    lpush(
        &mut con,
        &low,
        &(0..20).map(|i| job(format!("l{i}"))).collect::<Vec<_>>(),
    )
    .await;
    lpush(
        &mut con,
        &high,
        &(0..20).map(|i| job(format!("h{i}"))).collect::<Vec<_>>(),
    )
    .await;
    let mut cfg = config(&server.url(), &high, 1);
    cfg.queues = vec![high.clone(), low.clone()];
    let worker = start_worker(cfg);
    let mut last_high = 0;
    for i in 0..20 {
        last_high = last_high.max(
            wait_result(&mut con, &high, &format!("h{i}"), WAIT).await["finished_at"]
                .as_u64()
                .unwrap(),
        );
    }
    for i in 0..20 {
        let started = wait_result(&mut con, &low, &format!("l{i}"), WAIT).await["started_at"]
            .as_u64()
            .unwrap();
        assert!(
            started >= last_high,
            "low job l{i} started before high was drained"
        );
    }
    worker.stop().await;
}

/// Asks to be retried in ten years, as a broken or hostile API might.
struct SlowDown;

#[async_trait]
impl Tool for SlowDown {
    fn name(&self) -> &str {
        "slowdown"
    }
    async fn call(&self, _args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        Err(ToolError::Retryable {
            message: "come back later".into(),
            retry_after: Some(Duration::from_secs(10 * 365 * 86_400)),
        })
    }
}

#[tokio::test]
async fn a_retry_after_is_honoured_beyond_the_backoff_ceiling_but_capped_at_an_hour() {
    let server = redis();
    let q = queue_name("retry-after");
    let mut con = raw(&server.url()).await;
    let mut registry = Registry::with_builtins();
    registry.register(SlowDown);
    let worker = start_worker_with(config(&server.url(), &q, 2), registry);
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "slowdown", "args": {}, "id": "s", "max_attempts": 3}).to_string()],
    )
    .await;
    let keys = QueueKeys::new(&q);
    eventually(WAIT, "the job parked in delayed", || {
        let mut con = con.clone();
        let delayed = keys.delayed.clone();
        async move { zcard(&mut con, &delayed).await == 1 }
    })
    .await;
    let now = redis_time_ms(&mut con).await;
    let due: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&keys.delayed)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(&mut con)
        .await
        .unwrap();
    let wait_ms = due[0].1 as u64 - now;
    // The harness's backoff ceiling is 200 ms: the header wins over it, up to an hour.
    assert!(
        (3_590_000..=3_600_000).contains(&wait_ms),
        "due in {wait_ms} ms"
    );
    worker.stop().await;
}

/// The commands Redis runs while `act` does its work, as `redis-cli
/// MONITOR` prints them: `(client address, command line)`.
/// `act` gets the path of the log as it grows.
async fn monitored<F, Fut>(port: u16, act: F) -> Vec<(String, String)>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "monitor"])
        .stdout(out.reopen().unwrap())
        .spawn()
        .expect("redis-cli runs");
    let path = out.path().to_owned();
    eventually(WAIT, "MONITOR to start", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        async move { text.starts_with("OK") }
    })
    .await;
    act(path.clone()).await;
    // Whatever Redis ran for the act has been printed once a PING after
    // it shows.
    let mut con = raw(&format!("redis://127.0.0.1:{port}")).await;
    redis_cmd(&mut con, &["PING", "monitored-end"]).await;
    eventually(WAIT, "MONITOR to print the end", || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        async move { text.contains("monitored-end") }
    })
    .await;
    let _ = monitor.kill();
    let _ = monitor.wait();
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(" [")?;
            let (client, command) = rest.split_once("] ")?;
            let addr = client.split_whitespace().nth(1)?;
            Some((addr.to_owned(), command.to_owned()))
        })
        .collect()
}

/// An idle worker's wait carries the fetch: the job that lands is taken by
/// the fetch script run from the waiting connection right behind its
/// `BLMOVE`, a round trip sooner than a wake-up and then a fetch, and no
/// other fetch runs for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_workers_wait_fetches_the_job_that_lands_in_the_same_round_trip() {
    let server = redis();
    let q = queue_name("waitfetch");
    let keys = QueueKeys::new(&q);
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 4));
    until_waits_block(&con, 1).await;
    let ran = monitored(server.port(), |_| async {
        let mut con = con.clone();
        lpush(
            &mut con,
            &q,
            &[r#"{"tool":"echo","args":{"x":1},"id":"w1"}"#.into()],
        )
        .await;
        let r = wait_result(&mut con, &q, "w1", WAIT).await;
        assert_eq!(r["status"], "succeeded");
        // Waiting again: its next `BLMOVE` ran, so it is in the log too.
        until_waits_block(&con, 1).await;
    })
    .await;
    let fetch_of = format!("\"{}\" \"{}active:", keys.pending, keys.tag);
    let fetches: Vec<&String> = ran
        .iter()
        .filter(|(_, c)| c.to_lowercase().starts_with("\"evalsha\"") && c.contains(&fetch_of))
        .map(|(addr, _)| addr)
        .collect();
    assert_eq!(fetches.len(), 1, "one fetch ran: {ran:#?}");
    assert!(
        ran.iter()
            .any(|(addr, c)| addr == fetches[0] && c.to_lowercase().starts_with("\"blmove\"")),
        "from the waiting connection: {ran:#?}"
    );
    assert_eq!(llen(&mut con, &keys.pending).await, 0);
    worker.stop().await;
}

/// A waiting fetch sent while a slot was free can land a job once none is:
/// that job is put back at once, not held behind the running one while
/// another worker could take it. One slot, two idle queues, both waits
/// sent: a long job takes the slot, then a job lands on the other queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_a_waiting_fetch_takes_with_no_slot_free_is_put_back_not_held() {
    let server = redis();
    let (a, b) = (queue_name("slot-a"), queue_name("slot-b"));
    let kb = QueueKeys::new(&b);
    let mut con = raw(&server.url()).await;
    let mut cfg = config(&server.url(), &a, 1);
    cfg.queues.push(b.clone());
    let worker = start_worker(cfg);
    until_waits_block(&con, 2).await;
    lpush(
        &mut con,
        &a,
        &[r#"{"tool":"sleep","args":{"ms":1500},"id":"long"}"#.into()],
    )
    .await;
    eventually(WAIT, "the long job to take the slot", || async {
        worker.health.in_flight() == 1
    })
    .await;
    let watched = (con.clone(), kb.clone(), b.clone());
    let ran = monitored(server.port(), |log| async move {
        let (mut con, kb, b) = watched;
        lpush(
            &mut con,
            &b,
            &[r#"{"tool":"echo","args":{},"id":"late"}"#.into()],
        )
        .await;
        // Taken by B's wait, then put back while the slot is busy.
        let put_back = format!("\"{}pending\" \"{}workers\" \"batches\"", kb.tag, kb.tag);
        eventually(WAIT, "the job put back", || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let seen = text.contains(&put_back);
            async move { seen }
        })
        .await;
        assert_eq!(llen(&mut con, &kb.pending).await, 1, "back in pending");
        let held: Vec<String> = redis::cmd("KEYS")
            .arg(kb.active_pattern())
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(held.is_empty(), "held by no one: {held:?}");
    })
    .await;
    let fetch_of = format!("\"{}\" \"{}active:", kb.pending, kb.tag);
    assert!(
        ran.iter()
            .any(|(_, c)| c.to_lowercase().starts_with("\"evalsha\"") && c.contains(&fetch_of)),
        "the wait fetched it: {ran:#?}"
    );
    assert_eq!(worker.health.in_flight(), 1, "only the long job runs");
    let r = wait_result(&mut con, &b, "late", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["recoveries"], 0);
    assert_eq!(r["attempts"], 1);
    let long = wait_result(&mut con, &a, "long", WAIT).await;
    let started = |r: &Value| r["started_at"].as_u64().unwrap();
    assert!(
        started(&r) >= started(&long) + 1_500,
        "it ran once the slot was free: {long} then {r}"
    );
    worker.stop().await;
}
