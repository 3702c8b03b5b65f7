//! Job progress and tool context with a real redis-server and real `toolq
//! worker` processes: the `progress` test tool (test-tools feature) reports
//! in steps; `toolq job show` and the gateway show the reports while the
//! job runs and the last one after; a tool reporting 10,000 times in a
//! tight loop costs a bounded number of Redis writes; a tool sees its job's
//! id, queue and attempt; a job no longer held gets no progress written.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fault_process::spawn_worker_process;
use common::gateway::{start_gateway, token};
use common::process::{cli_ok, run, toolq};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use toolq::queue::{ProgressReport, QueueKeys};

/// `toolq job show ID --queue Q` (`--json` when `json`): status, stdout.
async fn job_show(url: &str, queue: &str, id: &str, json: bool) -> (bool, String) {
    let mut args = vec!["job", "show", id, "--queue", queue];
    if json {
        args.push("--json");
    }
    (true, cli_ok(url, &args).await)
}

async fn enqueue(con: &mut redis::aio::MultiplexedConnection, queue: &str, job: Value) {
    lpush(con, queue, &[job.to_string()]).await;
}

/// Counts the writes to `key` through keyspace notifications (every `SET`
/// of it is one event).
async fn count_writes(url: &str, key: &str) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let mut con = raw(url).await;
    redis_cmd(&mut con, &["CONFIG", "SET", "notify-keyspace-events", "K$"]).await;
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("__keyspace@0__:{key}"))
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let task = tokio::spawn(async move {
        let mut messages = pubsub.on_message();
        while let Some(m) = messages.next().await {
            if m.get_payload::<String>().is_ok_and(|p| p == "set") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (count, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_show_has_progress_while_running_and_the_last_report_after() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-show");
    let mut con = raw(&url).await;
    let _worker = spawn_worker_process(&url, &queue, 2, &[]);
    let id = "progress-show-1";
    enqueue(
        &mut con,
        &queue,
        json!({"id": id, "tool": "progress", "args": {"steps": 8, "ms": 4000}}),
    )
    .await;

    // Intermediate reports, each seen while the job runs.
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "seen {seen:?}");
        let (_, out) = job_show(&url, &queue, id, true).await;
        let view: Value = serde_json::from_str(&out).unwrap();
        let fraction = view["progress"]["fraction"].as_f64();
        if view["state"] == "running" {
            if let Some(f) = fraction.filter(|f| *f < 1.0 && !seen.contains(f)) {
                assert_eq!(view["progress"]["attempt"], 0);
                let message = view["progress"]["message"].as_str().unwrap();
                assert_eq!(message, format!("step {} of 8", (f * 8.0).round()));
                seen.push(f);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("intermediate fractions seen by `toolq job show`: {seen:?}");

    let result = wait_result(&mut con, &queue, id, Duration::from_secs(30)).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let (_, human) = job_show(&url, &queue, id, false).await;
    assert!(
        human.contains("progress 100% step 8 of 8 (attempt 0)"),
        "{human}"
    );
    // Expires with the job: the attempt's timeout (the tool's default 30 s)
    // plus the result TTL (1 h).
    let ttl: i64 = redis::cmd("PTTL")
        .arg(QueueKeys::new(&queue).progress(id))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_630_000, "ttl {ttl} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_tool_costs_a_bounded_number_of_writes() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-chatty");
    let mut con = raw(&url).await;
    let id = "chatty-1";
    let key = QueueKeys::new(&queue).progress(id);
    let (writes, counter) = count_writes(&url, &key).await;
    let _worker = spawn_worker_process(&url, &queue, 2, &[]);
    let (reports, ms) = (10_000u64, 2_000u64);
    enqueue(
        &mut con,
        &queue,
        json!({"id": id, "tool": "progress", "args": {"steps": reports, "ms": ms}}),
    )
    .await;
    let result = wait_result(&mut con, &queue, id, Duration::from_secs(30)).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["fraction"], 1.0, "the last report is always stored");
    assert_eq!(stored["message"], "step 10000 of 10000");
    // Notifications arrive after the writes: give the last one a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    counter.abort();
    let writes = writes.load(Ordering::SeqCst);
    // One at once, at most one per 250 ms after, and the last one.
    let bound = (ms / 250 + 2) as usize;
    println!("{reports} progress reports over {ms} ms -> {writes} Redis writes (bound {bound})");
    assert!(writes >= 2 && writes <= bound, "{writes} writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_sees_its_job_id_queue_and_attempt() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-context");
    let mut con = raw(&url).await;
    let _worker = spawn_worker_process(&url, &queue, 2, &[]);
    let id = "context-1";
    enqueue(
        &mut con,
        &queue,
        json!({"id": id, "tool": "progress", "max_attempts": 3,
               "args": {"steps": 1, "fail_first": 2}}),
    )
    .await;
    let result = wait_result(&mut con, &queue, id, Duration::from_secs(30)).await;
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["attempts"], 3, "{result}");
    assert_eq!(
        result["output"],
        json!({"id": id, "attempt": 2, "queue": queue, "steps": 1})
    );
    // The last report came from the third attempt.
    let (_, out) = job_show(&url, &queue, id, true).await;
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["progress"]["attempt"], 2, "{view}");
}

/// The script's contract: a job this worker does not hold (never held, or
/// settled) gets no progress written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_job_not_held_is_not_written() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-fence");
    let keys = QueueKeys::new(&queue);
    let broker = broker(&url);
    let mut con = raw(&url).await;
    let report = |slot| ProgressReport {
        slot,
        id: "fenced",
        fraction: 0.5,
        message: "half",
        attempt: 0,
        ttl: Duration::from_secs(60),
    };
    // Batch 7 holds two jobs: the first settled ('1'), the second held.
    let active = keys.active("w1");
    redis_cmd(&mut con, &["HSET", &active, "7:done", "10", "jobs", "1"]).await;
    assert!(!broker
        .write_progress(&keys, "w1", &report(7 * 1024))
        .await
        .unwrap());
    assert!(!broker
        .write_progress(&keys, "w2", &report(7 * 1024 + 1))
        .await
        .unwrap());
    assert!(!broker
        .write_progress(&keys, "w1", &report(8 * 1024))
        .await
        .unwrap());
    assert!(!exists(&mut con, &keys.progress("fenced")).await);
    assert!(broker
        .write_progress(&keys, "w1", &report(7 * 1024 + 1))
        .await
        .unwrap());
    let doc: String = redis::cmd("GET")
        .arg(keys.progress("fenced"))
        .query_async(&mut con)
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        (doc["fraction"].as_f64(), doc["message"].as_str()),
        (Some(0.5), Some("half"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_shows_a_running_jobs_progress() {
    let redis = redis();
    let url = redis.url();
    let gateway = start_gateway(&url, &[], &[]).await;
    let _worker = common::gateway::start_worker_for(&gateway, &url).await;
    let mut con = raw(&url).await;
    let id = "gateway-progress-1";
    enqueue(
        &mut con,
        "default",
        json!({"id": id, "tool": "progress", "args": {"steps": 6, "ms": 3000}}),
    )
    .await;
    let client = reqwest::Client::new();
    let bearer = token(&common::gateway::grant_all());
    let start = Instant::now();
    let body = loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress shown"
        );
        let r = client
            .get(gateway.url(&format!("/jobs/{id}")))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_ne!(status, 200, "finished before any progress was seen: {body}");
        if status == 202
            && body["progress"]["fraction"]
                .as_f64()
                .is_some_and(|f| f < 1.0)
        {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "running", "{body}");
    assert!(body["progress"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("step ")));
    let doc: Value = client
        .get(gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["JobStatus"]["properties"]["progress"].is_object(),
        "{}",
        schemas["JobStatus"]
    );
    assert!(schemas["Progress"]["properties"]["fraction"].is_object());
}

/// `toolq submit --wait` adds the running job's latest report to its
/// progress output (a plain line when stderr is not a terminal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_shows_the_running_jobs_progress() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-submit");
    let _worker = spawn_worker_process(&url, &queue, 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    let job = json!({"tool": "progress", "args": {"steps": 4, "ms": 2000}});
    std::fs::write(&file, format!("{job}\n")).unwrap();
    let path = file.display().to_string();
    let mut cmd = toolq(&["submit", &path, "--queue", &queue, "--wait", "--no-check"]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = run(cmd, Duration::from_secs(60)).await;
    assert!(status.success(), "{out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("toolq: progress "))
        .unwrap_or_else(|| panic!("no progress line in: {err}"));
    assert!(line.contains("% step ") && line.contains(" of 4"), "{line}");
    let result: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
}

/// A tool that never reports costs no progress write: 50 `echo` jobs leave
/// no progress key and no progress script call behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_never_reports_writes_no_progress() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("progress-silent");
    let mut con = raw(&url).await;
    let _worker = spawn_worker_process(&url, &queue, 4, &[]);
    let jobs: Vec<String> = (0..50)
        .map(|i| json!({"id": format!("silent-{i}"), "tool": "echo", "args": {"i": i}}).to_string())
        .collect();
    lpush(&mut con, &queue, &jobs).await;
    for i in 0..50 {
        let r = wait_result(
            &mut con,
            &queue,
            &format!("silent-{i}"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let pattern = QueueKeys::new(&queue).progress("*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let scripts: String = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(redis::Script::new(include_str!("../src/queue/scripts/progress.lua")).get_hash())
        .query_async::<Vec<i64>>(&mut con)
        .await
        .map(|v| v.iter().map(i64::to_string).collect())
        .unwrap();
    assert_eq!(scripts, "0", "the progress script was never even loaded");
}
