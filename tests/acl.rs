//! The least-privilege Redis users of `ops/redis/users.acl` against a real
//! redis-server that loads the file: a real `toolq worker` process logged in
//! as `worker` and producers logged in as `producer` run a whole workload
//! (successes, retries, dead jobs, a scheduled job, the NOSCRIPT path) without
//! a single refused command, and each user is refused what it must not do.

mod common;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{run, toolq, Toolq};
use common::*;
use serde_json::{json, Value};
use support::fake_weather::FakeWeather;
use toolq::job::{now_ms, Job, JobResult};
use toolq::producer::{BatchOptions, Producer};
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
        || text.contains("can't run this command")
        || text.contains("can't access at least one of the keys");
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
    // Nor read what workers hold: `stats` is the monitor's and the gateway's.
    refused(&mut producer, "producer", &["HGET", &active, "jobs"]).await;
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

    // Connections: the worker names its own and lists all (its reaper
    // recovers a worker none of whose connections is left); it cannot
    // kill, pause or rename others. The other users cannot list them.
    allowed(&mut worker, "worker", &["CLIENT", "SETNAME", "toolq:w:w1"]).await;
    allowed(&mut worker, "worker", &["CLIENT", "LIST", "TYPE", "normal"]).await;
    for args in [
        &["CLIENT", "KILL", "ID", "1"][..],
        &["CLIENT", "PAUSE", "10"],
        &["CLIENT", "NO-EVICT", "on"],
    ] {
        refused(&mut worker, "worker", args).await;
    }
    for (user, con) in [("producer", &mut producer), ("monitor", &mut monitor)] {
        refused(con, user, &["CLIENT", "LIST"]).await;
    }
    let mut gateway = raw(&url_as(&server, "gateway")).await;
    refused(&mut gateway, "gateway", &["CLIENT", "LIST"]).await;

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
    // Periodic jobs: the operator manages them, the worker ticks them.
    run(s(&[
        "schedule",
        "add",
        "acl-tick",
        "* * * * * *",
        "echo",
        "{}",
        "--queue",
        &q,
    ]))
    .await;
    let start = std::time::Instant::now();
    while !run(s(&["schedule", "list"]))
        .await
        .contains("schedule:acl-tick:")
    {
        assert!(start.elapsed() < WAIT, "the schedule never ticked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run(s(&["schedule", "show", "acl-tick"])).await;
    run(s(&["schedule", "pause", "acl-tick"])).await;
    run(s(&["schedule", "resume", "acl-tick"])).await;
    run(s(&["schedule", "remove", "acl-tick"])).await;
    worker.terminate();
    worker.wait(WAIT).await;
    run(s(&["dead", "purge", "--queue", &q, "--yes"])).await;
    run(s(&["queue", "delete", &q, "--yes"])).await;
    assert_eq!(acl_denials(&mut admin).await, Vec::<String>::new());
}

/// The users of `ops/redis/users.acl`, in the column order of [`MATRIX`].
const USERS: [&str; 4] = ["worker", "producer", "gateway", "monitor"];

/// What each user may do to each kind of key, one column per user of
/// [`USERS`]: `r` read it, `w` write it the way its type is written (push,
/// add, increment, `SETEX`), `s` overwrite it with a plain `SET`, `d` make it
/// go (`DEL`, `UNLINK`, `PEXPIRE`); `-` where Redis must answer `NOPERM`.
/// The producer enqueues, reads results and waits on its batch lists; the
/// worker runs jobs; the gateway is the operator (stats, cancel, pause, dead
/// retry and purge, queue delete); the monitor only reads.
const MATRIX: &[(&str, [&str; 4])] = &[
    //  kind              worker  producer gateway monitor
    ("pending", ["rw--", "rw--", "rw-d", "r---"]),
    ("delayed", ["rw--", "-w--", "rw-d", "r---"]),
    ("active", ["rw-d", "----", "r--d", "r---"]),
    ("landing", ["r--d", "----", "r--d", "r---"]),
    ("workers", ["rw--", "----", "r--d", "r---"]),
    ("dead", ["rw--", "----", "rw-d", "r---"]),
    ("stats", ["rw--", "----", "rw-d", "r---"]),
    ("fleet", ["rw-d", "----", "---d", "----"]),
    ("paused", ["r---", "----", "rwsd", "r---"]),
    ("cancel", ["r---", "----", "rw-d", "r---"]),
    ("shards", ["r---", "r---", "rw-d", "r---"]),
    ("result", ["-ws-", "r---", "rwsd", "r---"]),
    ("progress", ["-ws-", "r---", "r--d", "r---"]),
    ("batch", ["-w-d", "-w-d", "-w-d", "----"]),
    ("batch_callback", ["rw-d", "rw-d", "rw-d", "----"]),
    ("unique", ["r--d", "-ws-", "rwsd", "----"]),
    ("queues", ["-w--", "-w--", "rw--", "r---"]),
    ("worker_info", ["-w-d", "----", "r---", "r---"]),
    ("catalog_workers", ["-w--", "r---", "r---", "r---"]),
    ("catalog_doc", ["-w-d", "r---", "r---", "r---"]),
    ("schedule", ["rw-d", "----", "rw-d", "r---"]),
    ("schedules_due", ["rw--", "----", "rw-d", "r---"]),
    ("schedule_index", ["rw--", "----", "rw--", "r---"]),
    ("cache", ["rwsd", "----", "----", "----"]),
    ("cache_lock", ["rwsd", "----", "----", "----"]),
    ("rate_limit", ["rw-d", "----", "----", "----"]),
    ("gateway_rate_limit", ["rw-d", "----", "rw-d", "----"]),
];

/// The Redis type of each kind of key and its name in queue `q`, built by
/// `queue::keys` like the product builds them.
fn kind_key(kind: &str, q: &QueueKeys) -> (&'static str, String) {
    use toolq::queue::keys;
    match kind {
        "pending" => ("list", q.pending.clone()),
        "delayed" => ("zset", q.delayed.clone()),
        "active" => ("hash", q.active("w1")),
        "landing" => ("list", q.landing("w1")),
        "workers" => ("zset", q.workers.clone()),
        "dead" => ("zset", q.dead.clone()),
        "stats" => ("hash", q.stats.clone()),
        "fleet" => ("hash", q.fleet.clone()),
        "paused" => ("string", q.paused.clone()),
        "cancel" => ("zset", q.cancel.clone()),
        "shards" => ("hash", q.shards()),
        "result" => ("string", q.result("r1")),
        "progress" => ("string", q.progress("r1")),
        "batch" => ("list", q.batch("b1")),
        "batch_callback" => ("hash", q.batch_callback("b1")),
        "unique" => ("string", q.unique("u1")),
        "queues" => ("set", keys::QUEUES.to_owned()),
        "worker_info" => ("string", keys::worker_info("w1")),
        "catalog_workers" => ("zset", keys::CATALOG_WORKERS.to_owned()),
        "catalog_doc" => ("string", keys::catalog_worker("w1")),
        "schedule" => ("hash", q.schedule("s1")),
        "schedules_due" => ("zset", q.schedules_due()),
        "schedule_index" => ("hash", keys::SCHEDULES.to_owned()),
        "cache" => ("string", keys::cache("weather", "d1")),
        "cache_lock" => ("string", keys::cache_lock("weather", "d1")),
        "rate_limit" => ("zset", keys::rate_limit("weather")),
        // `serve.rate_limit`: one window per token subject, shared by gateways.
        "gateway_rate_limit" => ("zset", keys::rate_limit("gateway:alice")),
        other => panic!("no key kind {other}"),
    }
}

/// The probes of one right (`r`, `w`, `s` or `d`) on a key of type `ty`:
/// the right is granted when any of them is not refused.
fn probes(right: char, ty: &str, key: &str) -> Vec<Vec<String>> {
    let v = |args: &[&str]| {
        args.iter()
            .map(|a| a.replace("KEY", key))
            .collect::<Vec<_>>()
    };
    let list: &[&[&str]] = match (right, ty) {
        ('r', "list") => &[&["LLEN", "KEY"], &["LRANGE", "KEY", "0", "-1"]],
        ('r', "zset") => &[&["ZCARD", "KEY"], &["ZRANGE", "KEY", "0", "-1"]],
        ('r', "hash") => &[&["HGET", "KEY", "f"], &["HGETALL", "KEY"]],
        ('r', "set") => &[&["SMEMBERS", "KEY"]],
        ('r', "string") => &[&["GET", "KEY"], &["MGET", "KEY"], &["EXISTS", "KEY"]],
        ('w', "list") => &[
            &["LPUSH", "KEY", "x"],
            &["RPUSH", "KEY", "x"],
            &["LPOP", "KEY"],
            &["BLPOP", "KEY", "0.01"],
        ],
        ('w', "zset") => &[
            &["ZADD", "KEY", "1", "x"],
            &["ZREM", "KEY", "m"],
            &["ZREMRANGEBYSCORE", "KEY", "-inf", "+inf"],
        ],
        ('w', "hash") => &[&["HINCRBY", "KEY", "f", "1"], &["HSET", "KEY", "f", "1"]],
        ('w', "set") => &[&["SADD", "KEY", "x"], &["SREM", "KEY", "m"]],
        ('w', "string") => &[
            &["SETEX", "KEY", "60", "x"],
            &["PSETEX", "KEY", "60000", "x"],
            &["SET", "KEY", "x", "EX", "60"],
        ],
        ('s', _) => &[&["SET", "KEY", "gone"]],
        ('d', _) => &[
            &["DEL", "KEY"],
            &["UNLINK", "KEY"],
            &["EXPIRE", "KEY", "1"],
            &["PEXPIRE", "KEY", "1"],
        ],
        _ => panic!("no probe for {right} on a {ty}"),
    };
    list.iter().map(|a| v(a)).collect()
}

/// Puts one member of the right type at `key` (as the test's admin), so
/// that every probe finds the key as the product leaves it.
async fn seed(admin: &mut redis::aio::MultiplexedConnection, ty: &str, key: &str) {
    redis_cmd(admin, &["DEL", key]).await;
    match ty {
        "list" => redis_cmd(admin, &["RPUSH", key, "m"]).await,
        "zset" => redis_cmd(admin, &["ZADD", key, "1", "m"]).await,
        "hash" => redis_cmd(admin, &["HSET", key, "f", "1"]).await,
        "set" => redis_cmd(admin, &["SADD", key, "m"]).await,
        _ => redis_cmd(admin, &["SET", key, "v"]).await,
    }
}

/// True when Redis refused `args` for the connection's user.
async fn is_refused(con: &mut redis::aio::MultiplexedConnection, args: &[String]) -> bool {
    let mut cmd = redis::cmd(&args[0]);
    for a in &args[1..] {
        cmd.arg(a);
    }
    match cmd.query_async::<redis::Value>(con).await {
        Ok(_) => false,
        Err(e) => e.code() == Some("NOPERM") || e.to_string().contains("no permissions"),
    }
}

/// Every kind of key against every user: each right of [`MATRIX`] is tried
/// with real commands on a key seeded with its real type, and Redis must
/// grant exactly what the table grants. This is the hostile-input trial's
/// finding turned into a table: the producer could `SET` a queue's pending
/// list to a string, overwrite `dead`, `stats` and `workers`, and plant a
/// tool cache entry; now only the rights listed here exist.
#[tokio::test]
async fn every_key_kind_against_every_user() {
    let (server, _dir) = acl_redis();
    let q = QueueKeys::new(&queue_name("matrix"));
    let mut admin = raw(&url_as(&server, "admin")).await;
    let mut cons = Vec::new();
    for user in USERS {
        cons.push(raw(&url_as(&server, user)).await);
    }
    let mut wrong = Vec::new();
    let mut tried = 0;
    for (kind, rights) in MATRIX {
        let (ty, key) = kind_key(kind, &q);
        for (u, user) in USERS.iter().enumerate() {
            for (i, right) in ['r', 'w', 's', 'd'].into_iter().enumerate() {
                let expected = rights[u].as_bytes()[i] != b'-';
                let mut granted = false;
                for probe in probes(right, ty, &key) {
                    seed(&mut admin, ty, &key).await;
                    tried += 1;
                    if !is_refused(&mut cons[u], &probe).await {
                        granted = true;
                        if !expected {
                            wrong.push(format!("{user} may {probe:?} on {kind}"));
                        }
                    }
                }
                if expected && !granted {
                    wrong.push(format!("{user} is refused every '{right}' probe on {kind}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {tried} probes disagree with the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Scripts run each inner command with the caller's rights, so `EVAL` (which
/// the producer and the gateway need for their scripts) widens nothing:
/// neither with the victim key declared nor smuggled in through `ARGV`.
#[tokio::test]
async fn scripts_widen_no_one_s_access() {
    let (server, _dir) = acl_redis();
    let q = QueueKeys::new(&queue_name("eval"));
    let cache = toolq::queue::keys::cache("weather", "d1");
    let mut admin = raw(&url_as(&server, "admin")).await;
    redis_cmd(&mut admin, &["RPUSH", &q.pending, "job"]).await;
    let set = "return redis.call('SET', KEYS[1], 'gone')";
    let set_argv = "return redis.call('SET', ARGV[1], 'gone')";
    let del = "return redis.call('DEL', KEYS[1])";
    for user in ["producer", "gateway"] {
        let mut con = raw(&url_as(&server, user)).await;
        for key in [&q.pending, &q.dead, &q.stats, &q.workers, &cache] {
            refused(&mut con, user, &["EVAL", set, "1", key]).await;
            refused(&mut con, user, &["EVAL", set_argv, "0", key]).await;
        }
        if user == "producer" {
            refused(&mut con, user, &["EVAL", del, "1", &q.pending]).await;
        }
    }
    let mut monitor = raw(&url_as(&server, "monitor")).await;
    refused(&mut monitor, "monitor", &["EVAL", "return 1", "0"]).await;
    refused(&mut monitor, "monitor", &["EVALSHA", &"0".repeat(40), "0"]).await;
    assert_eq!(llen(&mut admin, &q.pending).await, 1);
    assert!(!exists(&mut admin, &cache).await);
}

/// The only `appid` the fake weather API accepts.
const WEATHER_KEY: &str = "acl-test-weather-key";

/// A `toolq worker` process logged in as `worker`, with the weather tool
/// pointed at `weather` under a shared 2/s rate limit, and fast heartbeats
/// so a killed worker's jobs come back within seconds.
fn worker_as_worker(server: &RedisServer, q: &str, weather: &FakeWeather) -> Toolq {
    let mut cmd = toolq(&["worker", "--queue", q, "--concurrency", "4"]);
    cmd.args([
        "--http-addr",
        "off",
        "--redis-url",
        &url_as(server, "worker"),
    ])
    .env("OPENWEATHER_API_KEY", WEATHER_KEY)
    .env("TOOLQ_TOOLS__WEATHER__BASE_URL", weather.base_url())
    .env("TOOLQ_TOOLS__WEATHER__RATE_LIMIT", "2/s")
    .env("TOOLQ_HEARTBEAT_INTERVAL_MS", "200")
    .env("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1500")
    .env("TOOLQ_BACKOFF_BASE_MS", "20")
    .env("TOOLQ_BACKOFF_MAX_MS", "200");
    Toolq::spawn(cmd)
}

fn job(id: &str, tool: &str, args: Value) -> Job {
    let mut job = Job::new(tool, args);
    job.id = Some(id.into());
    job
}

/// The product's own flows, each as its own user, with not one command
/// refused (per `ACL LOG`): the producer enqueues plain, unique (the
/// duplicate skipped), scheduled and capped jobs and waits on its batches;
/// workers run them with the tool cache, the shared rate limit, retries and
/// dead jobs, and one is SIGKILLed holding a job that the other recovers;
/// the monitor reads stats, results, dead jobs and the catalog. First, the
/// producer's attempt to plant a cache entry (the trial's poisoning) is
/// refused, so the first London job is a miss and the second a real hit.
#[tokio::test]
async fn product_flows_run_as_their_users() {
    use sha2::{Digest, Sha256};
    let (server, _dir) = acl_redis();
    let weather = FakeWeather::start(WEATHER_KEY).await;
    let q = queue_name("flows");
    let keys = QueueKeys::new(&q);
    let mut admin = raw(&url_as(&server, "admin")).await;
    let w1 = worker_as_worker(&server, &q, &weather);
    w1.wait_for_stderr("starting worker", WAIT).await;

    let mut producer_raw = raw(&url_as(&server, "producer")).await;
    let london = json!({"city": "London"});
    let digest: String = Sha256::digest(london.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let planted = toolq::queue::keys::cache("weather", &digest);
    let poison = r#"{"poisoned":true}"#;
    refused(&mut producer_raw, "producer", &["SET", &planted, poison]).await;
    // That refusal was the test's; from here on the log must stay empty.
    redis_cmd(&mut admin, &["ACL", "LOG", "RESET"]).await;

    let producer = Producer::connect(&url_as(&server, "producer"), None).unwrap();
    let wait = BatchOptions::default();
    for (id, cached) in [("london-1", false), ("london-2", true)] {
        let r = producer
            .enqueue_and_wait(&q, job(id, "weather", london.clone()), &wait, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}\n{}", w1.stderr()));
        assert_eq!(r.status, "succeeded", "{id}: {r:?}");
        assert_eq!(r.cached, cached, "{id}: {r:?}");
        assert!(!r.output.unwrap().to_string().contains("poisoned"));
    }
    // The key planted above is the very entry the worker filled.
    assert!(exists(&mut admin, &planted).await, "{planted}");

    // A capped, awaitable batch (enqueue.lua): three cities against 2/s,
    // a scheduled job, a dead one and two jobs sharing a unique key.
    let mut scheduled = job("scheduled", "echo", json!({"at": "later"}));
    scheduled.run_at = Some(now_ms() + 1000);
    let mut dead = job("dead", "fail", json!({"permanent": true}));
    dead.max_attempts = Some(1);
    let mut unique = job("unique-1", "echo", json!({"u": 1}));
    unique.unique_key = Some("only-once".into());
    let mut duplicate = job("unique-2", "echo", json!({"u": 2}));
    duplicate.unique_key = Some("only-once".into());
    let capped = [
        job("bergen", "weather", json!({"city": "Bergen"})),
        job("tromso", "weather", json!({"city": "Tromsø"})),
        job("bodo", "weather", json!({"city": "Bodø"})),
        scheduled,
        dead,
        unique,
        duplicate,
    ];
    let options = BatchOptions {
        awaitable: true,
        max_pending: Some(1000),
        ..Default::default()
    };
    let submitted = producer.enqueue_batch(&q, &capped, &options).await.unwrap();
    assert_eq!(submitted.duplicates, vec![6], "unique-2 is a duplicate");
    // And a plain awaitable batch (pipelined LPUSH, SCRIPT LOAD + EVALSHA
    // for its unique job).
    let mut plain: Vec<Job> = (0..5)
        .map(|i| job(&format!("plain-{i}"), "fail", json!({"times": 1})))
        .collect();
    plain[0].unique_key = Some("plain-unique".into());
    let options = BatchOptions {
        awaitable: true,
        ..Default::default()
    };
    let plain = producer.enqueue_batch(&q, &plain, &options).await.unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for submitted in [&submitted, &plain] {
        let mut waiter = producer.await_batch(submitted, Some(WAIT)).unwrap();
        while let Some(f) = waiter.next().await {
            let f = f.unwrap_or_else(|e| panic!("{e}\n{}", w1.stderr()));
            let r = f.result.expect("a stored result");
            statuses.insert(f.id, (r.status, r.attempts));
        }
    }
    for id in ["bergen", "tromso", "bodo", "scheduled", "unique-1"] {
        assert_eq!(statuses[id], ("succeeded".into(), 1), "{id}: {statuses:?}");
    }
    assert_eq!(statuses["dead"].0, "dead");
    for i in 0..5 {
        assert_eq!(statuses[&format!("plain-{i}")], ("succeeded".into(), 2));
    }

    // Recovery: the worker is SIGKILLed while it holds a job; a second
    // worker, as `worker` too, recovers and runs it.
    let slow = producer
        .enqueue(&q, job("slow", "sleep", json!({"ms": 1500})))
        .await
        .unwrap();
    eventually(WAIT, "the slow job is taken", || {
        let mut admin = admin.clone();
        let pending = keys.pending.clone();
        async move { llen(&mut admin, &pending).await == 0 }
    })
    .await;
    drop(w1);
    let mut w2 = worker_as_worker(&server, &q, &weather);
    let r = settled(&producer, &q, &slow, &w2).await;
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(r.recoveries, 1, "{r:?}");

    // The monitor reads what an operator watches.
    let monitor = url_as(&server, "monitor");
    for args in [
        vec!["stats", "--json"],
        vec!["tools"],
        vec!["result", "bergen", "--queue", &q],
        vec!["dead", "list", "--queue", &q],
        vec!["jobs", "list", "--queue", &q, "--state", "dead"],
    ] {
        let mut cmd = toolq(&args);
        cmd.args(["--redis-url", &monitor]);
        let (status, out, err) = run(cmd, WAIT).await;
        assert!(status.success(), "toolq {args:?} as monitor: {out}{err}");
    }

    assert_eq!(acl_denials(&mut admin).await, Vec::<String>::new());
    w2.terminate();
    w2.wait(WAIT).await;
    assert!(!w2.stderr().contains("NOPERM"), "{}", w2.stderr());
}

/// The hostile-input trial's writes, replayed as the producer: three jobs
/// pushed, then `SET` over the queue, `dead`, `stats` and `workers`, `DEL`
/// of them and a planted cache entry. Every one is refused and the three
/// jobs are still there.
#[tokio::test]
async fn the_trial_s_hostile_writes_are_refused() {
    let (server, _dir) = acl_redis();
    let victim = QueueKeys::new(&queue_name("victim"));
    let mut producer = raw(&url_as(&server, "producer")).await;
    for i in 0..3 {
        let job = json!({"tool": "echo", "args": {"i": i}}).to_string();
        allowed(&mut producer, "producer", &["LPUSH", &victim.pending, &job]).await;
    }
    let cache = toolq::queue::keys::cache("weather", &"0".repeat(64));
    for key in [
        &victim.pending,
        &victim.dead,
        &victim.stats,
        &victim.workers,
        &victim.active("w1"),
        &victim.delayed,
        &cache,
    ] {
        refused(&mut producer, "producer", &["SET", key, "gone"]).await;
        refused(&mut producer, "producer", &["DEL", key]).await;
        refused(&mut producer, "producer", &["PEXPIRE", key, "1"]).await;
    }
    let mut monitor = raw(&url_as(&server, "monitor")).await;
    assert_eq!(llen(&mut monitor, &victim.pending).await, 3);
}

/// `toolq serve` logged in as `gateway`, with a per-token rate limit (its
/// window lives in Redis), in front of a worker logged in as `worker`: the
/// catalog, `/execute` (answered, and 202 then `/jobs/{id}`), `/batch`,
/// `/queues` and `/health` all work with not one command refused.
#[tokio::test]
async fn the_gateway_serves_its_api_as_the_gateway_user() {
    use common::gateway::{grant_all, start_gateway, token};
    let (server, _dir) = acl_redis();
    let mut admin = raw(&url_as(&server, "admin")).await;
    let gw = start_gateway(
        &url_as(&server, "gateway"),
        &[("TOOLQ_SERVE__RATE_LIMIT", "1000/min")],
        &[],
    )
    .await;
    let _worker =
        common::fault_process::spawn_worker_process(&url_as(&server, "worker"), "default", 2, &[]);
    let token = token(&grant_all());
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(gw.url(path)).bearer_auth(&token).send();
    let start = std::time::Instant::now();
    loop {
        let tools: Value = get("/tools").await.unwrap().json().await.unwrap();
        let names = tools["tools"].as_array().cloned().unwrap_or_default();
        if names.iter().any(|t| t["name"] == "calculator") {
            break;
        }
        assert!(start.elapsed() < WAIT, "no catalog: {tools}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let execute = |body: Value| {
        http.post(gw.url("/execute"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = execute(json!({"tool": "calculator", "args": {"expression": "6*7"}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["output"]["result"], 42, "{doc}");
    let r = execute(json!({"tool": "sleep", "args": {"ms": 300}, "wait_ms": 20}))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let start = std::time::Instant::now();
    loop {
        let job: Value = get(&location).await.unwrap().json().await.unwrap();
        if job["status"] == "succeeded" || job["result"]["status"] == "succeeded" {
            break;
        }
        assert!(start.elapsed() < WAIT, "{location}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ndjson = "{\"tool\":\"echo\",\"args\":{\"a\":1}}\n{\"tool\":\"calculator\",\"args\":{\"expression\":\"1+2\"}}\n";
    let r = http
        .post(gw.url("/batch"))
        .bearer_auth(&token)
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for path in ["/queues", "/health"] {
        let r = get(path).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    assert_eq!(acl_denials(&mut admin).await, Vec::<String>::new());
}

/// Progress under least privilege: a real worker logged in as `worker`
/// stores a reporting job's progress, and the producer and gateway users
/// read it (the gateway through `toolq job show`'s path), without one
/// refused command.
#[tokio::test]
async fn progress_is_written_and_read_as_the_acl_users() {
    let (server, _dir) = acl_redis();
    let q = queue_name("acl-progress");
    let mut admin = raw(&url_as(&server, "admin")).await;
    let mut cmd = toolq(&["worker", "--queue", &q, "--http-addr", "off"]);
    cmd.arg("--redis-url")
        .arg(url_as(&server, "worker"))
        .env("TOOLQ_ENABLE_TEST_TOOLS", "1");
    let worker = Toolq::spawn(cmd);
    let producer = Producer::connect(&url_as(&server, "producer"), None).unwrap();
    let job = Job::new("progress", json!({"steps": 3, "ms": 600}));
    let id = producer.enqueue(&q, job).await.unwrap();
    let r = settled(&producer, &q, &id, &worker).await;
    assert_eq!(r.status, "succeeded", "{r:?}");
    // The producer reads a job's progress by id; the gateway (the
    // operator's user) finds the job wherever it is, progress included.
    let progress = producer.progress(&q, &id).await.unwrap().expect("progress");
    assert_eq!(
        (progress.fraction, progress.message.as_str()),
        (1.0, "step 3 of 3")
    );
    let gateway = Producer::connect(&url_as(&server, "gateway"), None).unwrap();
    let view = gateway.job(&q, &id).await.unwrap();
    assert_eq!(view.progress, Some(progress));
    assert_eq!(acl_denials(&mut admin).await, Vec::<String>::new());
}
