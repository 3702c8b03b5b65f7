//! Operator control against real worker processes: a job by id in every
//! state, cancelling pending, scheduled and running jobs, pausing a queue,
//! listing jobs, deleting a queue, and queue discovery without `SCAN`, all
//! through the `toolq` binary as an operator runs it.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::fault_process::{spawn_worker_process, WorkerProcess};
use common::process::{self, toolq};
use common::*;
use serde_json::{json, Value};
use toolq::job::Job;
use toolq::producer::Producer;

const WAIT: Duration = Duration::from_secs(30);

/// `toolq ARGS` against `url`: (exit code, stdout, stderr).
async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = toolq(args);
    cmd.env("TOOLQ_REDIS_URL", url);
    let (status, out, err) = process::run(cmd, WAIT).await;
    (status.code().unwrap_or(-1), out, err)
}

async fn show(url: &str, queue: &str, id: &str) -> Value {
    let (code, out, err) = cli(url, &["job", "show", id, "--queue", queue, "--json"]).await;
    assert!(code == 0 || code == 1, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

async fn state_of(url: &str, queue: &str, id: &str) -> String {
    show(url, queue, id).await["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn wait_state(url: &str, queue: &str, id: &str, want: &str) {
    let start = Instant::now();
    loop {
        let got = state_of(url, queue, id).await;
        if got == want {
            return;
        }
        assert!(start.elapsed() < WAIT, "job {id}: {got}, never {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stats(con: &mut redis::aio::MultiplexedConnection, queue: &str) -> HashMap<String, u64> {
    redis::cmd("HGETALL")
        .arg(format!("toolq:{{{queue}}}:stats"))
        .query_async(con)
        .await
        .unwrap()
}

fn job(tool: &str, args: Value) -> Job {
    Job::new(tool, args)
}

#[tokio::test]
async fn job_show_tells_every_state_and_cancel_stops_pending_scheduled_and_running_jobs() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("ctl");
    let producer = Producer::connect(&url, None).unwrap();
    let _worker: WorkerProcess = spawn_worker_process(&url, &q, 1, &[]);
    let mut con = raw(&url).await;

    // A runs (concurrency 1), with a producer waiting on it; B waits behind
    // it; C is scheduled for later.
    let waiting = {
        let (p, q) = (producer.clone(), q.clone());
        tokio::spawn(async move {
            let options = toolq::producer::BatchOptions::default();
            p.enqueue_and_wait(&q, job("sleep", json!({"ms": 20000})), &options, WAIT)
                .await
        })
    };
    let a = {
        let start = Instant::now();
        loop {
            let (_, out, _) = cli(
                &url,
                &[
                    "jobs", "list", "--queue", &q, "--state", "running", "--json",
                ],
            )
            .await;
            if let Some(line) = out.lines().next() {
                let j: Value = serde_json::from_str(line).unwrap();
                break j["id"].as_str().unwrap().to_owned();
            }
            assert!(start.elapsed() < WAIT, "A never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let b = producer
        .enqueue(&q, job("sleep", json!({"ms": 10})))
        .await
        .unwrap();
    let mut later = job("echo", json!({"text": "later"}));
    later.run_at = Some(toolq::job::now_ms() + 3_600_000);
    let c = producer.enqueue(&q, later).await.unwrap();
    let e = producer
        .enqueue(&q, job("calculator", json!({"expression": "1+1"})))
        .await
        .unwrap();

    let a_view = show(&url, &q, &a).await;
    assert_eq!(a_view["state"], "running", "{a_view}");
    assert!(
        a_view["worker"].as_str().is_some_and(|w| !w.is_empty()),
        "{a_view}"
    );
    assert_eq!(state_of(&url, &q, &b).await, "pending");
    let c_view = show(&url, &q, &c).await;
    assert_eq!(c_view["state"], "scheduled");
    assert!(c_view["due_at"].as_u64().unwrap() > toolq::job::now_ms() + 3_000_000);
    let (code, out, _) = cli(&url, &["job", "show", "no-such-id", "--queue", &q]).await;
    assert_eq!(code, 1);
    assert!(out.contains("unknown"), "{out}");

    // Pending and scheduled: removed, they never run.
    let (code, out, err) = cli(&url, &["job", "cancel", &b, "--queue", &q]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("was pending and will never run"), "{out}");
    let (code, out, _) = cli(&url, &["job", "cancel", &c, "--queue", &q]).await;
    assert_eq!(code, 0);
    assert!(out.contains("was scheduled"), "{out}");
    assert_eq!(state_of(&url, &q, &b).await, "cancelled");
    assert_eq!(zcard(&mut con, &format!("toolq:{{{q}}}:delayed")).await, 0);

    // Running: its call is stopped, it ends `cancelled`, and the producer
    // waiting on it hears so.
    let started = Instant::now();
    let (code, out, err) = cli(&url, &["job", "cancel", &a, "--queue", &q]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("its call was stopped"), "{out}");
    let result = waiting
        .await
        .unwrap()
        .expect("the waiting producer gets a result");
    assert_eq!(result.status, "cancelled");
    assert_eq!(result.error.unwrap().kind, "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not the 20 s sleep"
    );

    // E, behind them, ran; B never did.
    wait_state(&url, &q, &e, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let totals = stats(&mut con, &q).await;
    assert_eq!(totals.get("cancelled"), Some(&3), "{totals:?}");
    assert_eq!(totals.get("succeeded"), Some(&1), "only E: {totals:?}");
    assert_eq!(
        zcard(&mut con, &format!("toolq:{{{q}}}:dead")).await,
        0,
        "cancelled is not dead"
    );

    // Too late, or unknown: said so, exit 1.
    let (code, _, err) = cli(&url, &["job", "cancel", &a, "--queue", &q]).await;
    assert_eq!(code, 1);
    assert!(err.contains("already finished: cancelled"), "{err}");
    let (code, _, err) = cli(&url, &["job", "cancel", "no-such-id", "--queue", &q]).await;
    assert_eq!(code, 1);
    assert!(err.contains("no job no-such-id"), "{err}");

    // A dead job shows its error.
    let mut f = job("fail", json!({"permanent": true}));
    f.max_attempts = Some(1);
    let f = producer.enqueue(&q, f).await.unwrap();
    wait_state(&url, &q, &f, "dead").await;
    let f_view = show(&url, &q, &f).await;
    assert_eq!(f_view["error"]["kind"], "permanent", "{f_view}");
}

#[tokio::test]
async fn a_paused_queue_gets_no_new_jobs_until_resumed_while_running_ones_finish() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("pause");
    let producer = Producer::connect(&url, None).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _worker = spawn_worker_process(&url, &q, 4, &[("TOOLQ_HTTP_ADDR", &addr)]);
    let mut con = raw(&url).await;
    let running = producer
        .enqueue(&q, job("sleep", json!({"ms": 1500})))
        .await
        .unwrap();
    wait_state(&url, &q, &running, "running").await;

    let (code, out, err) = cli(&url, &["queue", "pause", &q]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");
    // Within a second (one heartbeat) no new job is taken.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        producer
            .enqueue(&q, job("echo", json!({"text": "x"})))
            .await
            .unwrap();
    }
    wait_state(&url, &q, &running, "succeeded").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        llen(&mut con, &format!("toolq:{{{q}}}:pending")).await,
        5,
        "nothing taken while paused"
    );

    let (_, out, _) = cli(&url, &["stats"]).await;
    let line = out
        .lines()
        .find(|l| l.starts_with(&q))
        .unwrap_or_default()
        .to_owned();
    assert!(line.ends_with("paused"), "{out}");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("toolq_queue_paused{{queue=\"{q}\"}} 1")),
        "{metrics}"
    );

    let (code, _, _) = cli(&url, &["queue", "resume", &q]).await;
    assert_eq!(code, 0);
    let key = format!("toolq:{{{q}}}:pending");
    eventually(WAIT, "the paused jobs run once resumed", || {
        let (mut con, key) = (con.clone(), key.clone());
        async move { llen(&mut con, &key).await == 0 }
    })
    .await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("toolq_queue_paused{{queue=\"{q}\"}} 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn jobs_list_pages_and_filters_by_tool_and_error_kind() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("list");
    let producer = Producer::connect(&url, None).unwrap();
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            producer
                .enqueue(&q, job("echo", json!({"text": i.to_string()})))
                .await
                .unwrap(),
        );
    }
    for i in 0..5 {
        producer
            .enqueue(
                &q,
                job("calculator", json!({"expression": format!("{i}+1")})),
            )
            .await
            .unwrap();
    }
    let (code, out, err) = cli(
        &url,
        &[
            "jobs", "list", "--queue", &q, "--limit", "10", "--offset", "20",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 of 30 pending job(s)"), "{out}");
    // Oldest first: the page starts with the 21st job enqueued.
    assert!(out.lines().nth(1).unwrap().starts_with(&ids[20]), "{out}");
    let (_, out, _) = cli(
        &url,
        &[
            "jobs",
            "list",
            "--queue",
            &q,
            "--tool",
            "calculator",
            "--json",
        ],
    )
    .await;
    let listed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 5);
    assert!(listed
        .iter()
        .all(|j| j["tool"] == "calculator" && j["state"] == "pending"));

    // Dead jobs by error kind.
    let dq = queue_name("dead");
    for _ in 0..3 {
        let mut j = job("fail", json!({"permanent": true}));
        j.max_attempts = Some(1);
        producer.enqueue(&dq, j).await.unwrap();
    }
    let mut slow = job("sleep", json!({"ms": 5000}));
    slow.timeout_ms = Some(50);
    slow.max_attempts = Some(1);
    producer.enqueue(&dq, slow).await.unwrap();
    let _worker = spawn_worker_process(&url, &dq, 4, &[]);
    let mut con = raw(&url).await;
    let dead = format!("toolq:{{{dq}}}:dead");
    eventually(WAIT, "four dead jobs", || {
        let (mut con, dead) = (con.clone(), dead.clone());
        async move { zcard(&mut con, &dead).await == 4 }
    })
    .await;
    let _ = &mut con;
    let (_, out, _) = cli(
        &url,
        &[
            "jobs",
            "list",
            "--queue",
            &dq,
            "--state",
            "dead",
            "--error-kind",
            "timeout",
        ],
    )
    .await;
    assert!(out.contains("1 of 1 dead job(s)"), "{out}");
    assert!(out.contains("timeout:"), "{out}");
    let (_, out, _) = cli(
        &url,
        &[
            "jobs",
            "list",
            "--queue",
            &dq,
            "--state",
            "dead",
            "--error-kind",
            "permanent",
            "--limit",
            "0",
        ],
    )
    .await;
    assert!(out.contains("3 of 3 dead job(s)"), "{out}");
}

#[tokio::test]
async fn deleting_a_queue_needs_confirmation_and_no_live_worker() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("del");
    let producer = Producer::connect(&url, None).unwrap();
    let done = producer
        .enqueue(&q, job("echo", json!({"text": "a"})))
        .await
        .unwrap();
    let mut worker = spawn_worker_process(&url, &q, 2, &[]);
    wait_state(&url, &q, &done, "succeeded").await;
    producer
        .enqueue(&q, job("sleep", json!({"ms": 1})))
        .await
        .unwrap();
    let mut con = raw(&url).await;

    // Not on a terminal and no --yes: refused, nothing deleted (a dead-job
    // purge asks the same).
    let (code, _, err) = cli(&url, &["queue", "delete", &q]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    let (code, _, err) = cli(&url, &["dead", "purge", "--queue", &q]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--yes"), "{err}");
    // A live worker serves it: refused.
    let (code, _, err) = cli(&url, &["queue", "delete", &q, "--yes"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("live worker"), "{err}");
    assert!(exists(&mut con, &format!("toolq:{{{q}}}:result:{done}")).await);

    worker.signal(libc::SIGTERM);
    worker.wait_exit(WAIT).expect("the worker stops");
    let (code, out, err) = cli(&url, &["queue", "delete", &q, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted queue"), "{out}");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("toolq:{{{q}}}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let registered: Vec<String> = redis::cmd("SMEMBERS")
        .arg("toolq:queues")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!registered.contains(&q), "{registered:?}");
}

#[tokio::test]
async fn stats_finds_queues_in_the_registry_without_scanning_the_keyspace() {
    let redis = redis();
    let url = redis.url();
    let producer = Producer::connect(&url, None).unwrap();
    let queues = [queue_name("a"), queue_name("b"), queue_name("c")];
    for q in &queues {
        producer
            .enqueue(q, job("echo", json!({"text": "x"})))
            .await
            .unwrap();
    }
    let mut con = raw(&url).await;
    // 20,000 unrelated keys: a scan would have to walk them.
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.set(format!("toolq:{{old}}:result:{i}"), "{}").ignore();
    }
    let () = pipe.query_async(&mut con).await.unwrap();
    redis_cmd(&mut con, &["CONFIG", "RESETSTAT"]).await;
    let (code, out, err) = cli(&url, &["stats", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    for q in &queues {
        assert!(out.contains(q.as_str()), "{q} listed: {out}");
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !info.contains("cmdstat_scan"),
        "stats scanned the keyspace:\n{info}"
    );

    // A Redis from before the registry: found once by a scan, registered.
    redis_cmd(&mut con, &["DEL", "toolq:queues"]).await;
    let (_, out, _) = cli(&url, &["stats", "--json"]).await;
    assert!(queues.iter().all(|q| out.contains(q.as_str())), "{out}");
    let registered: Vec<String> = redis::cmd("SMEMBERS")
        .arg("toolq:queues")
        .query_async(&mut con)
        .await
        .unwrap();
    for q in &queues {
        assert!(registered.contains(q), "{registered:?}");
    }
}
