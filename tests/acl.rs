//! The least-privilege Redis users of `ops/redis/users.acl` against a real
//! redis-server that loads the file: a real `toolq worker` process logged in
//! as `worker` and producers logged in as `producer` run a whole workload
//! (successes, retries, dead jobs, a scheduled job, the NOSCRIPT path) without
//! a single refused command, and each user is refused what it must not do.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{run, toolq, Toolq};
use common::*;
use serde_json::{json, Value};
use toolq::job::{now_ms, Job, JobResult};
use toolq::producer::Producer;
use toolq::queue::QueueKeys;
use toolq::redis_server::RedisServer;

const USERS_ACL: &str = include_str!("../ops/redis/users.acl");
/// Only in the test's copy of the file: flushes the script cache and reads
/// `ACL LOG`, which no shipped user may do.
const ADMIN: &str = "user admin on >admin-pw ~* &* +@all";
const WAIT: Duration = Duration::from_secs(30);

/// redis-server with a copy of `ops/redis/users.acl` (plus the test's admin).
fn acl_redis() -> (RedisServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.acl");
    std::fs::write(&path, format!("{}\n{ADMIN}\n", USERS_ACL.trim_end())).unwrap();
    // DEBUG enabled, so that it is the ACL, not this switch, that refuses it.
    let args = [
        "--aclfile",
        path.to_str().unwrap(),
        "--enable-debug-command",
        "yes",
    ];
    let server = RedisServer::start_with(&args).expect("redis-server loads ops/redis/users.acl");
    (server, dir)
}

/// A user's URL with the placeholder password the ACL file ships with.
fn url_as(server: &RedisServer, user: &str) -> String {
    let password = match user {
        "admin" => "admin-pw".to_owned(),
        u => format!("change-me-{u}"),
    };
    format!("redis://{user}:{password}@127.0.0.1:{}", server.port())
}

/// The commands Redis refused, per `ACL LOG`, except `CLIENT SETINFO`, which
/// redis-rs sends on connect and ignores the answer of (Redis 7.2+ logs it).
async fn acl_denials(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let entries: Vec<HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(admin)
        .await
        .unwrap();
    let text = |e: &HashMap<String, redis::Value>, k: &str| -> String {
        e.get(k)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default()
    };
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                text(e, "username"),
                text(e, "reason"),
                text(e, "object")
            )
        })
        .filter(|d| !d.contains("client|setinfo"))
        .collect()
}

/// The job's final result; on a timeout the worker's log says why.
async fn settled(producer: &Producer, q: &str, id: &str, worker: &Toolq) -> JobResult {
    match producer.wait(q, id, WAIT).await {
        Ok(r) => r,
        Err(e) => panic!("{e}; worker log:\n{}", worker.stderr()),
    }
}

fn workload(first: usize, count: usize) -> Vec<Job> {
    (first..first + count)
        .map(|i| {
            let mut job = match i % 10 {
                0..=5 => Job::new("calculator", json!({ "expression": format!("{i}*2") })),
                6 | 7 => Job::new("echo", json!({ "i": i })),
                // Two retryable failures, then success: three attempts.
                _ => Job::new("fail", json!({ "times": 2 })),
            };
            job.id = Some(format!("job-{i}"));
            job.max_attempts = Some(5);
            job
        })
        .collect()
}

fn check_result(i: usize, r: &JobResult) {
    assert_eq!(r.status, "succeeded", "job-{i}: {r:?}");
    let out = r.output.as_ref().unwrap();
    match i % 10 {
        0..=5 => assert_eq!(out["result"], json!(i * 2), "job-{i}"),
        6 | 7 => assert_eq!(out["i"], json!(i), "job-{i}"),
        _ => assert_eq!(r.attempts, 3, "job-{i} retried twice"),
    }
}

#[tokio::test]
async fn worker_and_producer_run_a_workload_as_their_acl_users() {
    let (server, _dir) = acl_redis();
    let q = queue_name("acl");
    let keys = QueueKeys::new(&q);
    let mut admin = raw(&url_as(&server, "admin")).await;
    let mut monitor = raw(&url_as(&server, "monitor")).await;

    let mut cmd = toolq(&[
        "worker",
        "--queue",
        &q,
        "--concurrency",
        "16",
        "--http-addr",
        "off",
    ]);
    cmd.arg("--redis-url")
        .arg(url_as(&server, "worker"))
        .env("TOOLQ_BACKOFF_BASE_MS", "20")
        .env("TOOLQ_BACKOFF_MAX_MS", "200");
    let mut worker = Toolq::spawn(cmd);
    worker.wait_for_stderr("starting worker", WAIT).await;

    let producer = Producer::connect(&url_as(&server, "producer"), None).unwrap();
    // Phase 1: 200 jobs, 20 of them retried twice.
    let ids = producer
        .enqueue_batch(&q, &workload(0, 200), &Default::default())
        .await
        .unwrap()
        .ids;
    for (i, id) in ids.iter().enumerate() {
        check_result(i, &settled(&producer, &q, id, &worker).await);
    }

    // Phase 2, after the script cache is gone: the worker's EVALSHA gets
    // NOSCRIPT and must load the scripts again as `worker`.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut jobs = workload(200, 100);
    let mut permanent = Job::new("fail", json!({ "permanent": true }));
    permanent.id = Some("dead-permanent".into());
    let mut exhausted = Job::new("fail", json!({ "times": 9 }));
    exhausted.id = Some("dead-exhausted".into());
    exhausted.max_attempts = Some(2);
    let mut unknown = Job::new("no-such-tool", json!({}));
    unknown.id = Some("dead-unknown".into());
    let run_at = now_ms() + 1500;
    let mut scheduled = Job::new("echo", json!({ "scheduled": true }));
    scheduled.id = Some("scheduled".into());
    scheduled.run_at = Some(run_at);
    jobs.extend([permanent, exhausted, unknown, scheduled]);
    let ids = producer
        .enqueue_batch(&q, &jobs, &Default::default())
        .await
        .unwrap()
        .ids;
    for (i, id) in ids.iter().take(100).enumerate() {
        check_result(200 + i, &settled(&producer, &q, id, &worker).await);
    }
    for id in ["dead-permanent", "dead-exhausted", "dead-unknown"] {
        let r = settled(&producer, &q, id, &worker).await;
        assert_eq!(r.status, "dead", "{id}: {r:?}");
    }
    let r = settled(&producer, &q, "scheduled", &worker).await;
    assert_eq!(r.status, "succeeded");
    assert!(
        r.started_at >= run_at,
        "ran {} ms early",
        run_at - r.started_at
    );

    // The CLI, as the same users: enqueue and wait as `producer`, read the
    // result back as `monitor`.
    let mut cmd = toolq(&["enqueue", "calculator", r#"{"expression":"6*7"}"#, "--wait"]);
    cmd.args(["--queue", &q, "--redis-url", &url_as(&server, "producer")]);
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert!(status.success(), "toolq enqueue --wait: {status}\n{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["output"]["result"], 42, "{stdout}");
    let id = r["id"].as_str().unwrap();
    let mut cmd = toolq(&["result", id, "--queue", &q]);
    cmd.args(["--redis-url", &url_as(&server, "monitor")]);
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert!(
        status.success(),
        "toolq result as monitor: {status}\n{stderr}"
    );
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["id"], id);

    // Everything settled, readable by `monitor`.
    let dead = dead_entries(&mut monitor, &q).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert_eq!(llen(&mut monitor, &keys.pending).await, 0);
    assert_eq!(zcard(&mut monitor, &keys.delayed).await, 0);

    // Not one command of the whole run was refused.
    let denials = acl_denials(&mut admin).await;
    assert!(
        denials.is_empty(),
        "refused during the workload: {denials:?}"
    );
    assert!(!worker.stderr().contains("NOPERM"), "{}", worker.stderr());

    worker.terminate();
    let status = worker.wait(WAIT).await;
    assert!(
        status.success(),
        "worker exit: {status}\n{}",
        worker.stderr()
    );
}

/// Runs `args` as the connection's user; the reply must be Redis's refusal.
async fn refused(con: &mut redis::aio::MultiplexedConnection, user: &str, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let err = cmd
        .query_async::<redis::Value>(con)
        .await
        .expect_err(&format!("{user} may not run {args:?}"));
    let text = err.to_string();
    // A script's inner refusal comes back as a script error naming it.
    let denied = err.code() == Some("NOPERM")
        || text.contains("NOPERM")
        || text.contains("no permissions")
        || text.contains("can't run this command");
    assert!(denied, "{user} {args:?}: expected NOPERM, got {text}");
}

async fn allowed(con: &mut redis::aio::MultiplexedConnection, user: &str, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    if let Err(e) = cmd.query_async::<redis::Value>(con).await {
        panic!("{user} must be allowed {args:?}: {e}");
    }
}

#[tokio::test]
async fn each_user_is_refused_what_it_must_not_do() {
    let (server, _dir) = acl_redis();
    let q = queue_name("acl-deny");
    let keys = QueueKeys::new(&q);
    let result = keys.result("r1");
    let mut worker = raw(&url_as(&server, "worker")).await;
    let mut producer = raw(&url_as(&server, "producer")).await;
    let mut monitor = raw(&url_as(&server, "monitor")).await;
    allowed(&mut producer, "producer", &["LPUSH", &keys.pending, "{}"]).await;
    allowed(&mut worker, "worker", &["SET", &result, "{}", "EX", "60"]).await;

    let flush_in_script = "return redis.call('FLUSHALL')";
    let forbidden: &[&[&str]] = &[
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["KEYS", "*"],
        &["DEBUG", "SLEEP", "0"],
        &["ACL", "LIST"],
        &["GET", "other:key"],
        &["SET", "other:key", "x"],
        &["EVAL", flush_in_script, "0"],
    ];
    for (user, con) in [("worker", &mut worker), ("producer", &mut producer)] {
        for args in forbidden {
            refused(con, user, args).await;
        }
    }
    // The producer adds jobs and may wait on its batch's notification list;
    // it can neither take jobs off pending nor delete them.
    let batch = keys.batch("b1");
    allowed(&mut producer, "producer", &["BLPOP", &batch, "0.01"]).await;
    allowed(&mut producer, "producer", &["LPOP", &batch]).await;
    refused(&mut producer, "producer", &["LPOP", &keys.pending]).await;
    refused(&mut producer, "producer", &["BRPOP", &keys.pending, "0.01"]).await;
    refused(&mut producer, "producer", &["DEL", &keys.pending]).await;
    let active = keys.active("p");
    let take = ["LMOVE", &keys.pending, &active, "RIGHT", "LEFT"];
    refused(&mut producer, "producer", &take).await;
    // `stats` reads how many jobs each worker holds.
    allowed(&mut producer, "producer", &["HGET", &active, "jobs"]).await;
    let steal = "return redis.call('RPOP', KEYS[1])";
    refused(
        &mut producer,
        "producer",
        &["EVAL", steal, "1", &keys.pending],
    )
    .await;

    // `monitor` reads toolq's keys and writes nothing.
    for args in [
        &["LLEN", &keys.pending][..],
        &["ZCARD", &keys.delayed],
        &["ZRANGE", &keys.dead, "0", "-1"],
        &["GET", &result],
        &["HGETALL", &keys.stats],
        &["INFO", "memory"],
        &["PING"],
    ] {
        allowed(&mut monitor, "monitor", args).await;
    }
    for args in [
        &["LPUSH", &keys.pending, "x"][..],
        &["RPOP", &keys.pending],
        &["SET", &result, "x"],
        &["DEL", &result],
        &["ZADD", &keys.delayed, "1", "x"],
        &["EXPIRE", &result, "1"],
        &["EVAL", "return 1", "0"],
        &["FLUSHALL"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "maxmemory"],
        &["GET", "other:key"],
    ] {
        refused(&mut monitor, "monitor", args).await;
    }

    // Without logging in, nothing at all.
    let mut anonymous = raw(&server.url()).await;
    let err = redis::cmd("PING")
        .query_async::<String>(&mut anonymous)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");

    // The refused FLUSHALLs and DELs left everything in place.
    assert_eq!(llen(&mut monitor, &keys.pending).await, 1);
    let kept: Option<String> = redis::cmd("GET")
        .arg(&result)
        .query_async(&mut monitor)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("{}"));
}

/// The gateway's user (`gateway`) can do every operator action the gateway
/// and the console offer, with a worker logged in as `worker` beside it:
/// nothing is refused by the ACL (per `ACL LOG`).
#[tokio::test]
async fn the_gateway_user_runs_every_operator_action() {
    let (server, _dir) = acl_redis();
    let q = queue_name("ops");
    let mut admin = raw(&url_as(&server, "admin")).await;
    let gateway = url_as(&server, "gateway");
    let mut cmd = toolq(&[
        "worker",
        "--queue",
        &q,
        "--concurrency",
        "1",
        "--http-addr",
        "off",
    ]);
    cmd.arg("--redis-url").arg(url_as(&server, "worker"));
    let mut worker = Toolq::spawn(cmd);
    worker.wait_for_stderr("starting worker", WAIT).await;

    let producer = Producer::connect(&gateway, None).unwrap();
    let long = producer
        .enqueue(&q, Job::new("sleep", json!({"ms": 20000})))
        .await
        .unwrap();
    let queued = producer
        .enqueue(&q, Job::new("echo", json!({"text": "x"})))
        .await
        .unwrap();
    let mut dead = Job::new("fail", json!({"permanent": true}));
    dead.max_attempts = Some(1);
    producer.enqueue(&q, dead).await.unwrap();
    let start = std::time::Instant::now();
    while producer.job(&q, &long).await.unwrap().state != toolq::producer::JobState::Running {
        assert!(start.elapsed() < WAIT, "the long job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = |args: Vec<String>| {
        let gateway = gateway.clone();
        async move {
            let mut cmd = toolq(&args.iter().map(String::as_str).collect::<Vec<_>>());
            cmd.arg("--redis-url").arg(&gateway);
            let (status, out, err) = run(cmd, WAIT).await;
            assert!(status.success(), "toolq {args:?}: {out}{err}");
            out
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    run(s(&["stats", "--json"])).await;
    run(s(&["job", "show", &queued, "--queue", &q])).await;
    run(s(&["jobs", "list", "--queue", &q, "--state", "running"])).await;
    run(s(&["queue", "pause", &q])).await;
    run(s(&["job", "cancel", &queued, "--queue", &q])).await;
    run(s(&["job", "cancel", &long, "--queue", &q])).await;
    run(s(&["queue", "resume", &q])).await;
    let start = std::time::Instant::now();
    while producer
        .list_jobs(
            &q,
            &toolq::producer::JobFilter {
                state: toolq::producer::ListState::Dead,
                tool: None,
                error_kind: None,
                limit: 0,
                offset: 0,
            },
        )
        .await
        .unwrap()
        .total
        == 0
    {
        assert!(start.elapsed() < WAIT, "the failing job never died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run(s(&["jobs", "list", "--queue", &q, "--state", "dead"])).await;
    run(s(&["dead", "retry", "--all", "--queue", &q])).await;
    worker.terminate();
    worker.wait(WAIT).await;
    run(s(&["dead", "purge", "--queue", &q, "--yes"])).await;
    run(s(&["queue", "delete", &q, "--yes"])).await;
    assert_eq!(acl_denials(&mut admin).await, Vec::<String>::new());
}
