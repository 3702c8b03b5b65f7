//! Redis Sentinel: real `toolq` processes (workers, the CLI) and a Rust
//! producer reach a master through `redis+sentinel://`, and keep going when
//! the master is SIGKILLed and a replica promoted. Each test prints its
//! figures (`--nocapture`); only what the design guarantees is asserted.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fault_process::spawn_worker_process;
use common::ledger::{self, SteadyFlow};
use common::process::{run, toolq};
use common::sentinel::{Passwords, SentinelSet};
use serde_json::json;
use toolq::job::Job;
use toolq::producer::Producer;
use toolq::queue::{Broker, QueueKeys, RedisTarget};

const PASSWORDS: Passwords = Passwords {
    master: "M4sterPa55w0rd",
    sentinel: "S3ntinelPa55w0rd",
};

/// A producer of its own on `url`, waiting for `wait_replicas` replicas.
fn producer(url: &str, wait_replicas: u32) -> Producer {
    let target = RedisTarget::new(url, None)
        .expect("a valid url")
        .with_wait_replicas(wait_replicas, Duration::from_millis(1000));
    Producer::from_broker(Arc::new(Broker::new(target).expect("a broker")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_flow_through_a_sentinel_url_with_the_passwords_masked() {
    let set = SentinelSet::start(Some(PASSWORDS)).await;
    let url = set.url();
    let queue = common::queue_name("sentinel-flow");
    let mut worker = spawn_worker_process(&url, &queue, 4, &[]);

    let start = Instant::now();
    let mut cmd = toolq(&[
        "enqueue",
        "echo",
        r#"{"hello":"sentinel"}"#,
        "--queue",
        &queue,
        "--wait",
    ]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = run(cmd, Duration::from_secs(60)).await;
    let round_trip = start.elapsed();
    assert!(status.success(), "enqueue --wait: {out}\n{err}");
    assert!(
        out.contains("succeeded") && out.contains("sentinel"),
        "{out}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| json!({"tool": "echo", "args": {"n": i}}).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("jobs file");
    let mut cmd = toolq(&[
        "submit",
        file.to_str().unwrap(),
        "--queue",
        &queue,
        "--wait",
    ]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = run(cmd, Duration::from_secs(60)).await;
    assert!(status.success(), "submit --wait: {out}\n{err}");
    assert_eq!(out.matches("succeeded").count(), 20, "{out}");

    // The jobs went to the master the sentinels name, and on to its replica.
    let master = set
        .master_index()
        .await
        .expect("the sentinels name a master");
    let mut on_master = common::raw(&set.server_url(master)).await;
    let on_replica = common::raw(&set.server_url(1 - master)).await;
    let keys = QueueKeys::new(&queue);
    let totals: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&keys.stats)
        .query_async(&mut on_master)
        .await
        .unwrap();
    assert_eq!(totals.get("succeeded").copied(), Some(21), "{totals:?}");
    common::eventually(Duration::from_secs(10), "the replica has the stats", || {
        let stats = keys.stats.clone();
        let mut c = on_replica.clone();
        async move {
            let n: Option<u64> = redis::cmd("HGET")
                .arg(&stats)
                .arg("succeeded")
                .query_async(&mut c)
                .await
                .unwrap_or(None);
            n == Some(21)
        }
    })
    .await;

    // The gateway, and an admin command, through the same URL.
    let gw = common::gateway::start_gateway(&url, &[], &[]).await;
    let _gateway_worker = common::gateway::start_worker_for(&gw, &url).await;
    let token = common::gateway::token(&common::gateway::grant_all());
    let r = reqwest::Client::new()
        .post(gw.url("/execute"))
        .bearer_auth(&token)
        .json(&json!({"tool": "calculator", "args": {"expression": "6*7"}}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["output"]["result"], 42, "{doc}");
    let mut cmd = toolq(&["stats", "--json"]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, stats, stats_err) = run(cmd, Duration::from_secs(30)).await;
    assert!(status.success(), "stats: {stats}\n{stats_err}");
    assert!(stats.contains(&queue), "{stats}");
    let gateway_log = gw.process.stderr();

    // Neither password shows: not in the worker's log, not in `toolq config`.
    let mut cmd = toolq(&["config"]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, shown, err) = run(cmd, Duration::from_secs(30)).await;
    assert!(status.success(), "config: {err}");
    assert!(shown.contains("sentinel_password=***"), "{shown}");
    worker.signal(libc::SIGTERM);
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some());
    let log = worker.log_text();
    for text in [&log, &shown, &err, &gateway_log, &stats_err] {
        assert!(
            !text.contains(PASSWORDS.master) && !text.contains(PASSWORDS.sentinel),
            "a password leaked:\n{text}"
        );
    }
    println!(
        "sentinel flow: `toolq enqueue --wait` through redis+sentinel:// took {:.0} ms (new process, sentinel lookup, run, result)",
        round_trip.as_secs_f64() * 1000.0
    );
}

/// What one failover run measured.
struct Failover {
    enqueued: usize,
    refused: usize,
    promoted_after: Duration,
    producer_gap: Duration,
    flow_gap: Duration,
    lost: Vec<String>,
    lost_after_promotion: usize,
    duplicated: usize,
}

/// How far the replica lags when the master dies (its link is cut that long
/// before): the writes of that moment exist on the master alone.
const REPLICA_LAG: Duration = Duration::from_millis(400);

/// Jobs flow from a Rust producer to two worker processes through the
/// sentinels, a little faster than the workers run them (a backlog in
/// `pending`); the replica's link is cut [`REPLICA_LAG`] before the master
/// is SIGKILLed. With `wait_replicas`, the dead master comes back as a replica
/// of the new one (so that writes can reach a replica again), as an
/// operator would bring it back.
async fn failover(wait_replicas: u32) -> Failover {
    let ledger = common::redis();
    let mut set = SentinelSet::start(None).await;
    let url = set.url();
    let queue = common::queue_name("sentinel-failover");
    let wait = wait_replicas.to_string();
    let env = [
        ("TOOLQ_TEST_COUNT_URL", ledger.url()),
        ("TOOLQ_WAIT_REPLICAS", wait.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // 2 workers x 2 slots x 100 ms: 40 jobs/s, under the producer's rate.
    let mut workers = vec![
        spawn_worker_process(&url, &queue, 2, &env),
        spawn_worker_process(&url, &queue, 2, &env),
    ];

    // The producer: one job every 5 ms, each with its own ledger key.
    let flow = SteadyFlow::start(producer(&url, wait_replicas), &queue, 100, &ledger.url()).await;
    let mut ledger_conn = common::raw(&ledger.url()).await;
    ledger::wait_runs(&ledger_conn, 60).await;
    let old = set.master_index().await.expect("a master");
    set.cut_replica(old, 1 - old).await;
    tokio::time::sleep(REPLICA_LAG).await;
    let killed = Instant::now();
    set.kill(old);
    let promoted_after = set.wait_master(1 - old, Duration::from_secs(60)).await;
    let promoted = Instant::now();
    if wait_replicas > 0 {
        set.restart_as_replica(old, 1 - old).await;
    }
    // Produce on for a while after the failover.
    tokio::time::sleep(Duration::from_secs(2)).await;
    flow.enqueue_more(50).await;
    let flowed = flow.stop().await;

    // Drain: until every job seen as enqueued ran, or nothing moved for 10 s.
    let counts = ledger::runs(&mut ledger_conn, &flowed.seen).await;
    for w in &mut workers {
        assert!(
            w.exited().is_none(),
            "a worker exited during the failover:\n{}",
            w.log_text()
        );
        // The stall (a worker stopping on refusals) must not take a
        // failover's moments without a master for refusals.
        assert!(
            !w.log_text().contains("stopping this worker"),
            "{}",
            w.log_text()
        );
    }
    let (lost, lost_after_promotion) = ledger::lost(&flowed.seen, &counts, promoted);
    let enqueued_at: Vec<Instant> = flowed.seen.iter().map(|(_, at)| *at).collect();
    Failover {
        enqueued: flowed.seen.len(),
        refused: flowed.refused,
        promoted_after,
        producer_gap: ledger::longest_gap(&enqueued_at, killed),
        flow_gap: ledger::longest_gap(&flowed.grew, killed),
        lost,
        lost_after_promotion,
        duplicated: ledger::ran_twice(&mut ledger_conn).await,
    }
}

fn report(label: &str, f: &Failover) {
    println!(
        "{label}: {} jobs enqueued ({} enqueue calls failed), sentinels promoted the replica {:.1} s after the kill; \
         longest pause: enqueues {:.1} s, jobs running {:.1} s; lost {} of the enqueued ({} of those after the promotion), \
         {} jobs ran twice or more",
        f.enqueued,
        f.refused,
        f.promoted_after.as_secs_f64(),
        f.producer_gap.as_secs_f64(),
        f.flow_gap.as_secs_f64(),
        f.lost.len(),
        f.lost_after_promotion,
        f.duplicated,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_producers_follow_a_master_failover() {
    let f = failover(0).await;
    report("failover, asynchronous replication", &f);
    // Replication is asynchronous: the last writes before the kill may be
    // lost (reported above). After the promotion nothing may be.
    assert_eq!(f.lost_after_promotion, 0, "lost after the promotion");
    assert!(f.enqueued > 300, "the producer kept enqueueing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_no_enqueued_job_is_lost_in_a_failover() {
    let f = failover(1).await;
    report("failover, wait_replicas = 1", &f);
    assert!(
        f.lost.is_empty(),
        "jobs the producer saw as enqueued were lost: {:?}",
        f.lost
    );
    assert!(f.enqueued > 300, "the producer kept enqueueing");
}

/// Drains `n` echo jobs with one worker process; jobs per second.
async fn drain_rate(url: &str, n: usize, wait_replicas: u32) -> f64 {
    let queue = common::queue_name("sentinel-cost");
    let keys = QueueKeys::new(&queue);
    let broker = common::broker(url);
    let payloads: Vec<String> = (0..n)
        .map(|i| json!({"tool": "echo", "args": {"n": i}, "result_ttl_s": 60}).to_string())
        .collect();
    let wait = wait_replicas.to_string();
    let mut worker = spawn_worker_process(url, &queue, 8, &[("TOOLQ_WAIT_REPLICAS", &wait)]);
    // Timed from the push, once the worker is up: start-up is not drain.
    common::eventually(Duration::from_secs(30), "the worker registers", || {
        let (broker, workers) = (&broker, keys.workers.clone());
        async move {
            let n: u64 = broker
                .query("zcard", redis::cmd("ZCARD").arg(&workers))
                .await
                .unwrap_or(0);
            n == 1
        }
    })
    .await;
    let start = Instant::now();
    broker.enqueue_many(&keys, &payloads).await.unwrap();
    common::eventually(Duration::from_secs(120), "the queue drains", || {
        let (broker, keys) = (&broker, &keys);
        async move {
            let d = broker.depths(keys).await.unwrap();
            d.pending == 0 && d.active == 0
        }
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    worker.signal(libc::SIGTERM);
    worker.wait_exit(Duration::from_secs(30));
    n as f64 / secs
}

/// One job at a time from one producer; jobs per second.
async fn enqueue_rate(url: &str, n: usize, wait_replicas: u32) -> f64 {
    let queue = common::queue_name("sentinel-cost");
    let producer = producer(url, wait_replicas);
    let start = Instant::now();
    for i in 0..n {
        producer
            .enqueue(&queue, Job::new("echo", json!({ "n": i })))
            .await
            .unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_of_wait_replicas() {
    let set = SentinelSet::start(None).await;
    let url = set.url();
    // Warm up (scripts loaded, connections made), then each mode in turn.
    enqueue_rate(&url, 200, 1).await;
    let enqueue_off = enqueue_rate(&url, 2000, 0).await;
    let enqueue_on = enqueue_rate(&url, 2000, 1).await;
    let drain_off = drain_rate(&url, 5000, 0).await;
    let drain_on = drain_rate(&url, 5000, 1).await;
    println!(
        "wait_replicas cost: one-at-a-time enqueue {enqueue_off:.0} jobs/s without, {enqueue_on:.0} with ({:.2}x); \
         drain by one worker (concurrency 8) {drain_off:.0} jobs/s without, {drain_on:.0} with ({:.2}x)",
        enqueue_on / enqueue_off,
        drain_on / drain_off,
    );
    // With a replica in sync, WAIT answers: every write still succeeds.
    assert!(enqueue_on > 0.0 && drain_on > 0.0);
}

/// Calls of `WAIT` the server has answered.
async fn wait_calls(c: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_short_of_its_replicas_is_an_error_to_producers_and_retried_by_workers() {
    // A lone Redis: no replica can ever acknowledge.
    let redis = common::redis();
    let url = redis.url();
    let queue = common::queue_name("not-durable");
    let keys = QueueKeys::new(&queue);
    let mut c = common::raw(&url).await;

    let mut cmd = toolq(&["enqueue", "echo", r#"{"n":1}"#, "--queue", &queue]);
    cmd.env("TOOLQ_REDIS_URL", &url)
        .env("TOOLQ_WAIT_REPLICAS", "1")
        .env("TOOLQ_WAIT_TIMEOUT_MS", "100");
    let (status, out, err) = run(cmd, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(3), "{out}\n{err}");
    assert!(
        err.contains("only 0 of 1 replicas") && err.contains("may not be durable"),
        "{err}"
    );
    // Written to the master all the same: the error says "may", not "lost".
    assert_eq!(common::llen(&mut c, &keys.pending).await, 1);

    // A worker runs it, and writes the ack again and again while no replica
    // has it, without stalling (a refusal would stop it after 5 tries).
    let before = wait_calls(&mut c).await;
    let mut worker = spawn_worker_process(
        &url,
        &queue,
        1,
        &[
            ("TOOLQ_WAIT_REPLICAS", "1"),
            ("TOOLQ_WAIT_TIMEOUT_MS", "50"),
        ],
    );
    common::eventually(Duration::from_secs(60), "8 tries of the ack", || {
        let mut c = c.clone();
        async move { wait_calls(&mut c).await >= before + 8 }
    })
    .await;
    assert!(worker.exited().is_none(), "{}", worker.log_text());
    let log = worker.log_text();
    assert!(log.contains("may not be durable"), "{log}");
    assert!(!log.contains("stopping this worker"), "{log}");
    // The master has the outcome; only its durability is in doubt.
    let results: Vec<String> = redis::cmd("KEYS")
        .arg(keys.result("*"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    worker.signal(libc::SIGKILL);
}

/// Subscribers to the wake-up channel on the data server at `url`.
async fn wake_listeners(url: &str) -> u64 {
    let mut con = common::raw(url).await;
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(toolq::queue::keys::WAKE_CHANNEL)
        .query_async(&mut con)
        .await
        .expect("PUBSUB NUMSUB");
    n
}

/// An idle worker's wake-up subscription follows a failover to the promoted
/// master, so a job scheduled after it still starts when due, not at the
/// 30 s safety poll (a worker whose subscription is down polls every
/// second instead: the subscription itself is what is checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_s_wake_ups_follow_a_failover() {
    let mut set = SentinelSet::start(None).await;
    let url = set.url();
    let queue = common::queue_name("sentinel-wake");
    let worker = spawn_worker_process(&url, &queue, 2, &[]);
    let old = set.master_index().await.expect("a master");
    let (old_url, new_url) = (set.server_url(old), set.server_url(1 - old));
    common::eventually(Duration::from_secs(30), "the worker subscribed", || {
        let u = old_url.clone();
        async move { wake_listeners(&u).await == 1 }
    })
    .await;
    assert_eq!(wake_listeners(&new_url).await, 0, "not on the replica");

    set.kill(old);
    set.wait_master(1 - old, Duration::from_secs(60)).await;
    let promoted = Instant::now();
    common::eventually(
        Duration::from_secs(30),
        "the worker subscribed on the promoted master",
        || {
            let u = new_url.clone();
            async move { wake_listeners(&u).await == 1 }
        },
    )
    .await;
    println!(
        "wake-up subscription on the new master {:.2} s after its promotion",
        promoted.elapsed().as_secs_f64()
    );

    let p = producer(&url, 0);
    let mut con = common::raw(&new_url).await;
    let now_ms = common::redis_time_ms(&mut con).await;
    let due = now_ms + 1500;
    let mut job = Job::new("echo", json!({}));
    job.run_at = Some(due);
    let id = p.enqueue(&queue, job).await.expect("enqueued");
    let r = p
        .wait(&queue, &id, Duration::from_secs(40))
        .await
        .expect("a result");
    let late = r.started_at as i64 - due as i64;
    println!("a job scheduled after the failover started {late} ms after it was due");
    assert!(late >= -5, "started {} ms early", -late);
    assert!(late <= 3000, "started {late} ms after it was due");
    assert!(
        !worker.log_text().contains("panicked"),
        "{}",
        worker.log_text()
    );
}
