//! One settlement path, end to end: the ways a job could be lost, stranded
//! or wedged that the fault scenarios do not drive, each reproduced with a
//! real worker (in this process, or a `toolq worker` process where a crash
//! or a pause is part of the case) against a real `redis-server`.

mod common;

use std::time::{Duration, Instant};

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::config::Config;
use toolq::queue::QueueKeys;
use toolq::worker::WorkerError;

type Con = redis::aio::MultiplexedConnection;

const WAIT: Duration = Duration::from_secs(20);
/// Heartbeats fast enough that recoveries take about a second.
const FAST_BEAT: [(&str, &str); 2] = [
    ("TOOLQ_HEARTBEAT_INTERVAL_MS", "200"),
    ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1000"),
];

fn fast_config(url: &str, q: &str, concurrency: usize) -> Config {
    Config {
        heartbeat_interval_ms: 200,
        heartbeat_timeout_ms: 1000,
        ..config(url, q, concurrency)
    }
}

async fn stat(con: &mut Con, q: &str, field: &str) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(&QueueKeys::new(q).stats)
        .arg(field)
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Waits for an in-process worker to stop on its own; its result.
async fn stopped_by_itself(w: RunningWorker, within: Duration) -> Result<(), WorkerError> {
    tokio::time::timeout(within, w.handle)
        .await
        .expect("the worker stopped on its own")
        .expect("the worker task did not panic")
}

/// Sorted-set members are unique: identical scheduled payloads without an
/// id, parked as they came, would become one job. Each is parked with the
/// id it was given, so both run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_scheduled_jobs_without_an_id_both_run() {
    let server = redis();
    let url = server.url();
    let q = queue_name("twins");
    let mut con = raw(&url).await;
    let due = redis_time_ms(&mut con).await + 1500;
    let job = json!({"tool": "echo", "args": {"x": 1}, "run_at": due}).to_string();
    lpush(&mut con, &q, &[job.clone(), job]).await;
    let worker = start_worker(config(&url, &q, 4));
    eventually(WAIT, "both twins to run", || {
        let (mut con, q) = (con.clone(), q.clone());
        async move { stat(&mut con, &q, "succeeded").await == 2 }
    })
    .await;
    worker.stop().await;
    assert_eq!(stat(&mut con, &q, "succeeded").await, 2);
}

/// A job whose notification list (or unique lock) holds a value of the
/// wrong type used to fail every ack of its worker, for ever, and on a
/// restart the next worker's too. Now it alone is buried, with an error
/// naming the key, and every other job's result is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_a_key_of_the_wrong_type_is_buried_alone_and_the_rest_succeed() {
    let server = redis();
    let url = server.url();
    let q = queue_name("wedge");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    redis_cmd(&mut con, &["SET", &k.batch("evil"), "x"]).await;
    redis_cmd(&mut con, &["LPUSH", &k.unique("evil"), "x"]).await;
    let mut jobs: Vec<String> = (0..20)
        .map(|i| json!({"tool": "echo", "args": {}, "id": format!("g{i}")}).to_string())
        .collect();
    jobs.insert(
        5,
        json!({"tool": "echo", "args": {}, "id": "e1", "batch": "evil"}).to_string(),
    );
    jobs.insert(
        15,
        json!({"tool": "echo", "args": {}, "id": "e2", "unique_key": "evil"}).to_string(),
    );
    lpush(&mut con, &q, &jobs).await;
    let worker = start_worker(config(&url, &q, 8));
    for (id, key) in [("e1", k.batch("evil")), ("e2", k.unique("evil"))] {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "dead", "{r}");
        assert_eq!(r["error"]["kind"], "unwritable", "{r}");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(&key), "names {key}: {message}");
    }
    for i in 0..20 {
        let r = wait_result(&mut con, &q, &format!("g{i}"), WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let dead = dead_entries(&mut con, &q).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    // The worker is not wedged: later jobs still succeed.
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {}, "id": "later"}).to_string()],
    )
    .await;
    let r = wait_result(&mut con, &q, "later", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(worker.health.not_ready_reason().is_none());
    worker.stop().await;
}

/// A dead set of the wrong type: the burial fails before it writes, so the
/// job is never nowhere. Redis keeps refusing, so the worker stalls
/// visibly (not ready, error) and stops, putting the job back; once the key
/// is fixed, the next worker buries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burial_redis_refuses_keeps_the_job_and_stalls_the_worker_visibly() {
    let server = redis();
    let url = server.url();
    let q = queue_name("refused");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    redis_cmd(&mut con, &["SET", &k.dead, "x"]).await;
    let job = json!({"tool": "fail", "args": {"permanent": true}, "id": "p"}).to_string();
    lpush(&mut con, &q, &[job]).await;
    let worker = start_worker(config(&url, &q, 2));
    let health = worker.health.clone();
    let stopped = stopped_by_itself(worker, WAIT).await;
    match stopped {
        Err(WorkerError::Stalled(why)) => assert!(why.contains(&k.dead), "{why}"),
        other => panic!("expected a stall, got {other:?}"),
    }
    assert_eq!(health.not_ready_reason(), Some("settle"));
    assert_eq!(llen(&mut con, &k.pending).await, 1, "put back, not lost");
    assert!(!exists(&mut con, &k.result("p")).await);

    redis_cmd(&mut con, &["DEL", &k.dead]).await;
    let worker = start_worker(config(&url, &q, 2));
    let r = wait_result(&mut con, &q, "p", WAIT).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert_eq!(zcard(&mut con, &k.dead).await, 1);
    worker.stop().await;
}

/// A worker whose Redis user may not write result keys (`NOPERM`) used to
/// retry its acks for ever while looking healthy. It now stalls, says why,
/// and stops; its jobs are not lost: a worker with the right user runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_may_not_write_results_stalls_and_its_jobs_run_elsewhere() {
    let server = redis();
    let url = server.url();
    let q = queue_name("noperm");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let tag = format!("toolq:{{{q}}}:");
    let patterns: Vec<String> = ["pending", "active:*", "workers", "stats", "delayed", "dead"]
        .iter()
        .map(|p| format!("~{tag}{p}"))
        .collect();
    let mut acl = vec![
        "ACL",
        "SETUSER",
        "noresults",
        "on",
        ">pw",
        "+@all",
        "~toolq:worker:*",
        "~toolq:catalog:*",
    ];
    acl.extend(patterns.iter().map(String::as_str));
    redis_cmd(&mut con, &acl).await;
    let ids: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| json!({"tool": "echo", "args": {}, "id": id}).to_string())
        .collect();
    lpush(&mut con, &q, &jobs).await;
    let limited = url.replacen("redis://", "redis://noresults:pw@", 1);
    let worker = start_worker(fast_config(&limited, &q, 4));
    let health = worker.health.clone();
    match stopped_by_itself(worker, WAIT).await {
        Err(WorkerError::Stalled(why)) => assert!(why.to_lowercase().contains("noperm"), "{why}"),
        other => panic!("expected a stall, got {other:?}"),
    }
    assert_eq!(health.not_ready_reason(), Some("settle"));
    for id in &ids {
        assert!(!exists(&mut con, &k.result(id)).await);
    }
    let worker = start_worker(fast_config(&url, &q, 4));
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    worker.stop().await;
}

/// Redis out of memory (`maxmemory` reached, `noeviction`) while jobs run:
/// their outcomes are refused, the worker stalls and stops, and when memory
/// frees the next worker recovers and finishes every job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_outcomes_hit_maxmemory_stalls_and_loses_nothing() {
    let server = redis();
    let url = server.url();
    let q = queue_name("oom");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let ids: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| json!({"tool": "sleep", "args": {"ms": 1500}, "id": id}).to_string())
        .collect();
    lpush(&mut con, &q, &jobs).await;
    let worker = start_worker(fast_config(&url, &q, 6));
    eventually(WAIT, "every job to be taken", || {
        let mut con = con.clone();
        let key = k.pending.clone();
        async move { llen(&mut con, &key).await == 0 }
    })
    .await;
    redis_cmd(
        &mut con,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "1"]).await;
    match stopped_by_itself(worker, WAIT).await {
        Err(WorkerError::Stalled(why)) => assert!(why.to_lowercase().contains("oom"), "{why}"),
        other => panic!("expected a stall, got {other:?}"),
    }
    for id in &ids {
        assert!(!exists(&mut con, &k.result(id)).await);
    }
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).await;
    let worker = start_worker(fast_config(&url, &q, 6));
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    worker.stop().await;
}

/// A worker serving two queues is paused long enough to be declared dead
/// on one of them only (the other queue has no live worker to reap it).
/// When it wakes it cancels the jobs that were taken over, and only those:
/// the other queue's jobs finish on it, none stays held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_queue_cancels_only_that_queues_jobs() {
    let server = redis();
    let url = server.url();
    let (qa, qb) = (queue_name("qa"), queue_name("qb"));
    let mut con = raw(&url).await;
    let sleeper = |id: &str| json!({"tool": "sleep", "args": {"ms": 3000}, "id": id}).to_string();
    let a_ids = ["a0", "a1", "a2"];
    let b_ids = ["b0", "b1", "b2"];
    let a = spawn_worker_on(&url, &[&qa, &qb], 6, &FAST_BEAT);
    let a_id = worker_id_of(&mut con, &qa, a.pid(), WAIT).await;
    lpush(&mut con, &qa, &a_ids.map(sleeper)).await;
    lpush(&mut con, &qb, &b_ids.map(sleeper)).await;
    for q in [&qa, &qb] {
        let key = QueueKeys::new(q).active(&a_id);
        eventually(WAIT, "A to hold three jobs of each queue", || {
            let (mut con, key) = (con.clone(), key.clone());
            async move { held_count(&mut con, &key).await == 3 }
        })
        .await;
    }
    a.signal(libc::SIGSTOP);
    let b = spawn_worker_process(&url, &qa, 6, &FAST_BEAT);
    let qa_active = QueueKeys::new(&qa).active(&a_id);
    eventually(WAIT, "B to recover A's qa jobs", || {
        let (mut con, key) = (con.clone(), qa_active.clone());
        async move { held_count(&mut con, &key).await == 0 }
    })
    .await;
    a.signal(libc::SIGCONT);
    for id in b_ids {
        let r = wait_result(&mut con, &qb, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["worker"], a_id.as_str(), "{r}");
        assert_eq!(r["recoveries"], 0, "{r}");
    }
    for id in a_ids {
        let r = wait_result(&mut con, &qa, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["recoveries"], 1, "{r}");
    }
    let qb_active = QueueKeys::new(&qb).active(&a_id);
    assert_eq!(held_count(&mut con, &qb_active).await, 0);
    assert!(a.log_lines("declared dead") >= 1);
    for w in [a, b] {
        w.signal(libc::SIGTERM);
    }
}

/// A payload that carries `recoveries` of its own, not as its first field:
/// recovery prepends its count, and the next worker used to bury the job
/// as invalid JSON (a duplicate field). The counts add up instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_its_own_recoveries_field_survives_a_worker_crash() {
    let server = redis();
    let url = server.url();
    let q = queue_name("ownrec");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let job = r#"{"tool":"sleep","args":{"ms":4000},"id":"r1","recoveries":0}"#.to_owned();
    lpush(&mut con, &q, &[job]).await;
    let mut a = spawn_worker_process(&url, &q, 2, &FAST_BEAT);
    let a_id = worker_id_of(&mut con, &q, a.pid(), WAIT).await;
    eventually(WAIT, "A to hold the job", || {
        let (mut con, key) = (con.clone(), k.active(&a_id));
        async move { held_count(&mut con, &key).await == 1 }
    })
    .await;
    a.signal(libc::SIGKILL);
    a.wait_exit(WAIT);
    let b = spawn_worker_process(&url, &q, 2, &FAST_BEAT);
    let r = wait_result(&mut con, &q, "r1", Duration::from_secs(30)).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["recoveries"], 1, "{r}");
    b.signal(libc::SIGTERM);
}

/// A job buried as poison by recovery releases its unique lock, so the
/// same work can be enqueued again at once (not after the lock's TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_buried_as_poison_releases_its_unique_lock() {
    let server = redis();
    let url = server.url();
    let q = queue_name("poisonlock");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let env = [("TOOLQ_MAX_RECOVERIES", "1"), FAST_BEAT[0], FAST_BEAT[1]];
    // As a producer enqueues a unique job: the lock names the job's id.
    redis_cmd(
        &mut con,
        &["SET", &k.unique("once"), "poison", "EX", "3600"],
    )
    .await;
    let job = json!({"tool": "crash", "args": {}, "id": "poison", "unique_key": "once"});
    lpush(&mut con, &q, &[job.to_string()]).await;
    let mut w = spawn_worker_process(&url, &q, 2, &env);
    let start = Instant::now();
    loop {
        if let Some(status) = w.exited() {
            assert!(!status.success());
            w = spawn_worker_process(&url, &q, 2, &env);
        }
        if zcard(&mut con, &k.dead).await > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never buried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = wait_result(&mut con, &q, "poison", WAIT).await;
    assert_eq!(r["error"]["kind"], "poisoned", "{r}");
    eventually(WAIT, "the unique lock to be released", || {
        let (mut con, key) = (con.clone(), k.unique("once"));
        async move { !exists(&mut con, &key).await }
    })
    .await;
    w.signal(libc::SIGTERM);
}

/// One vocabulary: a job whose retry is pending reads `retrying`, then
/// `succeeded`; the queue's totals use the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_retry_reads_retrying_and_totals_use_the_same_words() {
    let server = redis();
    let url = server.url();
    let q = queue_name("words");
    let mut con = raw(&url).await;
    let job = json!({"tool": "fail", "args": {"times": 1}, "id": "w1"}).to_string();
    lpush(&mut con, &q, &[job]).await;
    let worker = start_worker(Config {
        backoff_base_ms: 1500,
        backoff_max_ms: 1500,
        ..config(&url, &q, 2)
    });
    let key = QueueKeys::new(&q).result("w1");
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.last().map(String::as_str) != Some("succeeded") {
        assert!(start.elapsed() < WAIT, "statuses seen: {seen:?}");
        let text: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        if let Some(status) = text
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["status"].as_str().map(str::to_owned))
        {
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, ["retrying", "succeeded"]);
    let producer = toolq::producer::Producer::from_broker(std::sync::Arc::new(broker(&url)));
    let stats = producer
        .queue_stats(&q, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (
            stats.totals.succeeded,
            stats.totals.retrying,
            stats.totals.dead
        ),
        (1, 1, 0)
    );
    worker.stop().await;
}

/// Redis turned read-only for a while (a failover: the server became a
/// replica, `READONLY` to every write) is waited out like an outage, not
/// counted as refused writes: the worker does not stall, and every job
/// finishes once Redis takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_moment_of_a_failover_is_waited_out_not_taken_for_a_refusal() {
    let server = redis();
    let url = server.url();
    let q = queue_name("readonly");
    let mut con = raw(&url).await;
    let worker = start_worker(config(&url, &q, 8));
    let ids: Vec<String> = (0..40).map(|i| format!("r{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| json!({"tool": "sleep", "args": {"ms": 300}, "id": id}).to_string())
        .collect();
    lpush(&mut con, &q, &jobs).await;
    // A replica of a master that never answers: every write is refused
    // with READONLY, for longer than five refusals take.
    redis_cmd(&mut con, &["REPLICAOF", "127.0.0.1", "1"]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis_cmd(&mut con, &["REPLICAOF", "NO", "ONE"]).await;
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(
        worker.health.not_ready_reason() != Some("settle"),
        "not stalled"
    );
    worker.stop().await;
}
