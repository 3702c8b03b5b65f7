//! Hostile time and a hostile Redis, with real `toolq worker` processes and a
//! real `redis-server` (issue 19): one worker's clock shifted by hours
//! (`faketime`), Redis at `maxmemory` (with `noeviction`, and with an
//! evicting policy), and Redis stalled past the heartbeat timeout.
//!
//! The jobs call an HTTP tool (`probe`) served by this test process, which
//! records when each job id started and ended, by the test's clock (the same
//! host clock Redis reads). A job that ran twice at once, ran before its
//! `run_at`, or never ran is a fact the probe saw, not a guess from logs.
//! Each test prints its figures (`jobs`, `lost`, `duplicates`, ...) on
//! stderr; run with `--nocapture` to read them.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use tokio::sync::watch;
use toolq::queue::{keys, QueueKeys};
use toolq::redis_server::RedisServer;

type Con = redis::aio::MultiplexedConnection;

const WAIT: Duration = Duration::from_secs(60);
/// Heartbeats fast enough that a false "dead" would show within a second.
const FAST_BEAT: [(&str, &str); 2] = [
    ("TOOLQ_HEARTBEAT_INTERVAL_MS", "200"),
    ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1000"),
];
const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The probe: an HTTP endpoint the jobs call.

/// One execution of a job as the probe saw it.
#[derive(Debug, Clone)]
struct Run {
    start_ms: u64,
    end_ms: Option<u64>,
}

#[derive(Default)]
struct Book {
    runs: HashMap<String, Vec<Run>>,
    in_flight: HashMap<String, usize>,
    /// Ids that were running twice at the same moment.
    overlapped: HashSet<String>,
}

#[derive(Clone)]
struct Probe {
    url: String,
    book: Arc<Mutex<Book>>,
    release: Arc<watch::Sender<bool>>,
}

/// Ends a run when the handler finishes, or is dropped because the worker
/// gave up the call (its connection closed).
struct Running {
    book: Arc<Mutex<Book>>,
    id: String,
    index: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut book = self.book.lock().unwrap();
        if let Some(n) = book.in_flight.get_mut(&self.id) {
            *n -= 1;
        }
        if let Some(run) = book
            .runs
            .get_mut(&self.id)
            .and_then(|r| r.get_mut(self.index))
        {
            run.end_ms = Some(now_ms());
        }
    }
}

/// `{"id": ID, "ms": N}` sleeps N ms; `{"id": ID, "hold": true}` waits until
/// the test releases the held jobs.
async fn probe_call(State(p): State<Probe>, Json(args): Json<Value>) -> Json<Value> {
    let id = args["id"].as_str().unwrap_or("").to_owned();
    let start_ms = now_ms();
    let _running = {
        let mut book = p.book.lock().unwrap();
        let runs = book.runs.entry(id.clone()).or_default();
        runs.push(Run {
            start_ms,
            end_ms: None,
        });
        let index = runs.len() - 1;
        let n = book.in_flight.entry(id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            book.overlapped.insert(id.clone());
        }
        Running {
            book: p.book.clone(),
            id: id.clone(),
            index,
        }
    };
    if args["hold"].as_bool() == Some(true) {
        let mut rx = p.release.subscribe();
        let _ = rx.wait_for(|released| *released).await;
    } else if let Some(ms) = args["ms"].as_u64() {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Json(json!({"id": id, "started_ms": start_ms}))
}

impl Probe {
    async fn start() -> Probe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (release, _) = watch::channel(false);
        let probe = Probe {
            url,
            book: Arc::default(),
            release: Arc::new(release),
        };
        let app = Router::new()
            .route("/", post(probe_call))
            .with_state(probe.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        probe
    }

    /// The worker environment that makes `probe` a tool calling this server.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOOLQ_TOOLS__HTTP__PROBE__URL", self.url.clone()),
            ("TOOLQ_TOOLS__HTTP__PROBE__TIMEOUT_MS", "120000".into()),
        ]
    }

    fn release_held(&self) {
        self.release.send_replace(true);
    }

    fn runs(&self, id: &str) -> Vec<Run> {
        self.book
            .lock()
            .unwrap()
            .runs
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn running(&self, ids: &[String]) -> usize {
        let book = self.book.lock().unwrap();
        ids.iter()
            .filter(|id| book.in_flight.get(*id).is_some_and(|n| *n > 0))
            .count()
    }

    fn overlapped(&self) -> usize {
        self.book.lock().unwrap().overlapped.len()
    }

    /// (never ran, ran more than once) among `ids`.
    fn lost_and_duplicates(&self, ids: &[String]) -> (usize, usize) {
        let book = self.book.lock().unwrap();
        let count = |id: &String| book.runs.get(id).map_or(0, Vec::len);
        (
            ids.iter().filter(|id| count(id) == 0).count(),
            ids.iter().filter(|id| count(id) > 1).count(),
        )
    }
}

fn probe_job(id: &str, args: Value) -> String {
    let mut args = args;
    args["id"] = json!(id);
    json!({"tool": "probe", "id": id, "args": args}).to_string()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Spawns a worker calling `probe`, with `extra` on top of the fast beat.
fn spawn(
    url: &str,
    q: &str,
    concurrency: usize,
    probe: &Probe,
    extra: &[(&str, &str)],
) -> WorkerProcess {
    let probe_env = probe.env();
    let mut env: Vec<(&str, &str)> = FAST_BEAT.to_vec();
    env.extend(probe_env.iter().map(|(k, v)| (*k, v.as_str())));
    env.extend_from_slice(extra);
    spawn_worker_process(url, q, concurrency, &env)
}

async fn wait_held(con: &mut Con, q: &str, worker: &str, n: u64) {
    let key = QueueKeys::new(q).active(worker);
    eventually(WAIT, &format!("{worker} to hold {n} jobs"), || {
        let (mut con, key) = (con.clone(), key.clone());
        async move { held_count(&mut con, &key).await == n }
    })
    .await;
}

/// Waits until Redis's clock reads at least `at_ms`.
async fn until_redis_time(con: &mut Con, at_ms: u64) {
    eventually(WAIT, "Redis's clock to move on", || {
        let mut con = con.clone();
        async move { redis_time_ms(&mut con).await >= at_ms }
    })
    .await;
}

async fn worker_score(con: &mut Con, q: &str, worker: &str) -> Option<u64> {
    redis::cmd("ZSCORE")
        .arg(&QueueKeys::new(q).workers)
        .arg(worker)
        .query_async::<Option<f64>>(con)
        .await
        .unwrap()
        .map(|s| s as u64)
}

// ---------------------------------------------------------------------------
// Clock skew.

/// Where Debian's `faketime` package puts the preload library.
fn libfaketime() -> String {
    if let Ok(path) = std::env::var("TOOLQ_TEST_LIBFAKETIME") {
        return path;
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .expect(
            "libfaketime missing: `apt-get install faketime` (scripts/install-deps.sh), \
             or point TOOLQ_TEST_LIBFAKETIME at libfaketime.so.1",
        )
}

/// A normal worker A holds jobs; a worker B whose wall clock is `offset`
/// (e.g. "+3h") holds jobs and takes the scheduled ones. Redis's clock is
/// the only one that counts, so: nobody is declared dead, nothing is
/// recovered, no scheduled job starts before its `run_at` (nor, a clock
/// behind, hours late), and a job due in an hour stays parked.
async fn skewed_worker_judges_by_redis_time(offset: &str, skew_ms: i64) {
    let server = redis();
    let url = server.url();
    let q = queue_name("skew");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let probe = Probe::start().await;

    // A, the normal clock, holds four jobs (its whole concurrency).
    let a = spawn(&url, &q, 4, &probe, &[]);
    let a_id = worker_id_of(&mut con, &q, a.pid(), WAIT).await;
    let g = ids("g", 4);
    let held: Vec<String> = g
        .iter()
        .map(|id| probe_job(id, json!({"hold": true})))
        .collect();
    lpush(&mut con, &q, &held).await;
    wait_held(&mut con, &q, &a_id, 4).await;

    // B, hours off, holds four more and has four slots free.
    let lib = libfaketime();
    let b = spawn(
        &url,
        &q,
        8,
        &probe,
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let b_id = worker_id_of(&mut con, &q, b.pid(), WAIT).await;
    let registered_at = redis_time_ms(&mut con).await;
    // The skew took: B's registration carries its own idea of "now".
    let info: String = redis::cmd("GET")
        .arg(keys::worker_info(&b_id))
        .query_async(&mut con)
        .await
        .unwrap();
    let b_started = serde_json::from_str::<Value>(&info).unwrap()["started_at"]
        .as_i64()
        .unwrap();
    let measured_skew = b_started - registered_at as i64;
    assert!(
        (measured_skew - skew_ms).abs() < 10 * 60 * 1000,
        "B's clock is off by {measured_skew} ms, not about {skew_ms} ms: is libfaketime working?"
    );
    let h = ids("h", 4);
    let held: Vec<String> = h
        .iter()
        .map(|id| probe_job(id, json!({"hold": true})))
        .collect();
    lpush(&mut con, &q, &held).await;
    wait_held(&mut con, &q, &b_id, 4).await;

    // Scheduled jobs, due 2 s from now by Redis's clock: half parked by the
    // producer in the delayed set, half pushed to pending with a `run_at`
    // (the worker that takes one parks it). A is full: B runs them.
    let due = redis_time_ms(&mut con).await + 2000;
    let s = ids("s", 6);
    for (i, id) in s.iter().enumerate() {
        let mut job: Value = serde_json::from_str(&probe_job(id, json!({}))).unwrap();
        job["run_at"] = json!(due);
        if i % 2 == 0 {
            redis_cmd(
                &mut con,
                &["ZADD", &k.delayed, &due.to_string(), &job.to_string()],
            )
            .await;
        } else {
            lpush(&mut con, &q, &[job.to_string()]).await;
        }
    }
    // And one due in an hour: early by B's clock if B is ahead.
    let later = redis_time_ms(&mut con).await + HOUR_MS as u64;
    let mut job: Value = serde_json::from_str(&probe_job("later", json!({}))).unwrap();
    job["run_at"] = json!(later);
    lpush(&mut con, &q, &[job.to_string()]).await;

    for id in &s {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["worker"], b_id.as_str(), "A was full: {r}");
    }
    // Both have been reaping, each by its own clock if it used one, for
    // five heartbeat timeouts since B came up.
    until_redis_time(&mut con, registered_at + 5000).await;
    assert_eq!(held_count(&mut con, &k.active(&a_id)).await, 4, "A's jobs");
    assert_eq!(held_count(&mut con, &k.active(&b_id)).await, 4, "B's jobs");
    let now = redis_time_ms(&mut con).await;
    for (who, id) in [("A", &a_id), ("B", &b_id)] {
        let score = worker_score(&mut con, &q, id).await;
        let age = score.map(|s| now as i64 - s as i64);
        assert!(
            age.is_some_and(|a| a.abs() < 1000),
            "{who}'s heartbeat is scored by Redis's clock: age {age:?} ms"
        );
        // So is its tool catalog entry (a day ahead, a worker's own clock
        // would have dropped every other worker's entry).
        let listed: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys::CATALOG_WORKERS)
            .arg(id)
            .query_async(&mut con)
            .await
            .unwrap();
        let age = listed.map(|s| now as i64 - s as i64);
        assert!(
            age.is_some_and(|a| a.abs() < 5000),
            "{who}'s catalog entry is scored by Redis's clock: age {age:?} ms"
        );
    }
    probe.release_held();
    for (jobs, owner) in [(&g, &a_id), (&h, &b_id)] {
        for id in jobs.iter() {
            let r = wait_result(&mut con, &q, id, WAIT).await;
            assert_eq!(r["status"], "succeeded", "{r}");
            assert_eq!(r["worker"], owner.as_str(), "not recovered: {r}");
            assert_eq!(r["recoveries"], 0, "{r}");
        }
    }
    let early: Vec<String> = s
        .iter()
        .filter(|id| probe.runs(id).iter().any(|r| r.start_ms < due))
        .cloned()
        .collect();
    assert!(early.is_empty(), "ran before their run_at: {early:?}");
    assert!(probe.runs("later").is_empty(), "the job due in an hour ran");
    let parked: Vec<String> = redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        parked.len() == 1 && parked[0].contains("\"later\""),
        "{parked:?}"
    );
    let all: Vec<String> = [g, h, s].concat();
    let (lost, duplicates) = probe.lost_and_duplicates(&all);
    let declared = a.log_lines("declared dead") + b.log_lines("declared dead");
    let recovered = a.log_lines("recovered the jobs of a dead worker")
        + b.log_lines("recovered the jobs of a dead worker");
    eprintln!(
        "clock skew {offset} (measured {:.2} h): jobs {}, lost {lost}, duplicates {duplicates}, \
         ran early 0, declared dead {declared}, recoveries {recovered}",
        measured_skew as f64 / HOUR_MS as f64,
        all.len()
    );
    assert_eq!((lost, duplicates, declared, recovered), (0, 0, 0, 0));
    for w in [a, b] {
        w.signal(libc::SIGTERM);
    }
}

/// B's clock three hours ahead: were it trusted, A's heartbeat would look
/// three hours old (stolen jobs) and every scheduled job would be due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_three_hours_ahead_steals_nothing_and_runs_nothing_early() {
    skewed_worker_judges_by_redis_time("+3h", 3 * HOUR_MS).await;
}

/// B's clock three hours behind: were it trusted, B's heartbeat would look
/// three hours old to A (B declared dead while alive) and B would park the
/// scheduled jobs for three more hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_three_hours_behind_is_not_declared_dead_and_runs_on_time() {
    skewed_worker_judges_by_redis_time("-3h", -3 * HOUR_MS).await;
}

// ---------------------------------------------------------------------------
// A stalled Redis.

/// Redis stops answering everyone for longer than the heartbeat timeout
/// (`CLIENT PAUSE`, then `DEBUG SLEEP`) while three workers run jobs. No
/// job is lost, and since the stall hit every worker alike, nobody is
/// declared dead: no job runs twice, let alone twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_loses_nothing_and_runs_no_job_twice_at_once() {
    let server =
        RedisServer::start_with(&["--enable-debug-command", "yes"]).expect("redis-server starts");
    let url = server.url();
    let q = queue_name("stall");
    let mut con = raw(&url).await;
    let probe = Probe::start().await;
    let workers: Vec<WorkerProcess> = (0..3).map(|_| spawn(&url, &q, 4, &probe, &[])).collect();
    for w in &workers {
        worker_id_of(&mut con, &q, w.pid(), WAIT).await;
    }
    let jobs = ids("j", 60);
    let payloads: Vec<String> = jobs
        .iter()
        .map(|id| probe_job(id, json!({"ms": 1500})))
        .collect();
    lpush(&mut con, &q, &payloads).await;
    let stalls: [&[&str]; 2] = [
        &["CLIENT", "PAUSE", "3000", "ALL"],
        &["DEBUG", "SLEEP", "3"],
    ];
    for stall in stalls {
        // Mid-run: every worker busy with jobs that outlast the stall's start.
        eventually(WAIT, "all twelve slots busy", || async {
            probe.running(&jobs) == 12
        })
        .await;
        let mut other = raw(&url).await;
        if stall[0] == "DEBUG" {
            // DEBUG SLEEP blocks the server for its length before it answers.
            tokio::spawn(async move { redis_cmd(&mut other, stall).await });
        } else {
            redis_cmd(&mut other, stall).await;
        }
        // Let the stall pass: a command answered after it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis_time_ms(&mut con).await;
    }
    for id in &jobs {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let (lost, duplicates) = probe.lost_and_duplicates(&jobs);
    let overlapped = probe.overlapped();
    let declared: usize = workers.iter().map(|w| w.log_lines("declared dead")).sum();
    let recoveries = {
        let mut n = 0;
        for id in &jobs {
            let r = wait_result(&mut con, &q, id, WAIT).await;
            n += r["recoveries"].as_u64().unwrap_or(0);
        }
        n
    };
    eprintln!(
        "stalled redis (CLIENT PAUSE 3 s, DEBUG SLEEP 3 s; heartbeat timeout 1 s): jobs {}, \
         lost {lost}, duplicates {duplicates}, ran twice at once {overlapped}, \
         declared dead {declared}, recoveries {recoveries}",
        jobs.len()
    );
    assert_eq!(lost, 0);
    // Fencing's bound: a job runs twice at once only if its worker was
    // declared dead and the job recovered (then the old run is cancelled
    // at its worker's next heartbeat). A stall hits every worker alike, so
    // that should not happen at all; if it does, it stays within the bound.
    for id in &jobs {
        let runs = probe.runs(id);
        if runs.len() > 1 {
            let r = wait_result(&mut con, &q, id, WAIT).await;
            assert!(
                r["recoveries"].as_u64() >= Some(1),
                "{id} ran {runs:?}: {r}"
            );
        }
    }
    assert!(overlapped <= duplicates && (duplicates == 0 || declared > 0));
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
}

// ---------------------------------------------------------------------------
// Memory pressure.

async fn used_memory(con: &mut Con) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

async fn pending_ids(con: &mut Con, q: &str) -> HashSet<String> {
    let payloads: Vec<String> = redis::cmd("LRANGE")
        .arg(&QueueKeys::new(q).pending)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap();
    payloads
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Redis reaches `maxmemory` (`noeviction`) while two workers run jobs and
/// a producer sends a large batch. The batch stops where Redis refused it
/// and the error names exactly the jobs that went in (they, and only they,
/// are on the queue); `toolq enqueue` and `toolq submit` say "out of
/// memory" and exit 3 with nothing enqueued; the workers, whose outcomes
/// Redis refuses, stall visibly (exit 3). Once memory frees, restarted
/// workers finish every job: none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_refuses_producers_exactly_and_loses_no_job() {
    let server = redis();
    let url = server.url();
    let (q, side) = (queue_name("oom"), queue_name("oomside"));
    let mut con = raw(&url).await;
    let probe = Probe::start().await;
    let mut workers: Vec<WorkerProcess> = (0..2).map(|_| spawn(&url, &q, 4, &probe, &[])).collect();
    for w in &workers {
        worker_id_of(&mut con, &q, w.pid(), WAIT).await;
    }
    // Eight jobs held until Redis is full (so both workers hold outcomes
    // Redis will refuse), sixteen more behind them.
    let jobs = ids("m", 24);
    let payloads: Vec<String> = jobs
        .iter()
        .enumerate()
        .map(|(i, id)| match i {
            0..8 => probe_job(id, json!({"hold": true})),
            _ => probe_job(id, json!({"ms": 200})),
        })
        .collect();
    lpush(&mut con, &q, &payloads[..8]).await;
    eventually(WAIT, "both workers to hold four jobs", || async {
        probe.running(&jobs[..8]) == 8
    })
    .await;
    lpush(&mut con, &q, &payloads[8..]).await;

    // 4 MB of room, and a 12 MB batch for a queue no worker serves.
    redis_cmd(
        &mut con,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    let limit = used_memory(&mut con).await + 4 * 1024 * 1024;
    redis_cmd(
        &mut con,
        &["CONFIG", "SET", "maxmemory", &limit.to_string()],
    )
    .await;
    let filler = "x".repeat(350);
    let batch: Vec<toolq::job::Job> = (0..30_000)
        .map(|i| {
            let mut job = toolq::job::Job::new("echo", json!({"pad": filler}));
            job.id = Some(format!("b{i}"));
            job
        })
        .collect();
    let producer = toolq::producer::Producer::connect(&url, None).unwrap();
    let options = toolq::producer::BatchOptions::default();
    let err = producer
        .enqueue_batch(&side, &batch, &options)
        .await
        .expect_err("the batch does not fit");
    let toolq::producer::ProducerError::PartlyEnqueued(p) = err else {
        panic!("expected a partial enqueue, got {err}")
    };
    assert!(p.source.is_out_of_memory(), "{}", p.source);
    assert!(!p.enqueued.is_empty() && !p.not_enqueued.is_empty(), "{p}");
    assert!(p.uncertain.is_empty() && p.duplicates.is_empty(), "{p}");
    assert_eq!(p.enqueued.len() + p.not_enqueued.len(), batch.len());
    let on_queue = pending_ids(&mut con, &side).await;
    let said: HashSet<String> = p.enqueued.iter().cloned().collect();
    assert!(
        on_queue == said,
        "the error names exactly the jobs on the queue"
    );
    let half = on_queue.len();

    // Full (the batch's own query buffer counted while it was read; now
    // hold Redis over the limit): the command line enqueues nothing, says
    // why, exits 3.
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "1"]).await;
    let enqueue =
        common::process::toolq(&["enqueue", "echo", "{}", "--queue", &side, "--no-check"])
            .env("TOOLQ_REDIS_URL", &url)
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&enqueue.stderr);
    assert_eq!(enqueue.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("out of memory"), "{stderr}");
    let file = std::env::temp_dir().join(format!("{side}.jsonl"));
    std::fs::write(&file, "{\"tool\":\"echo\",\"args\":{}}\n".repeat(50)).unwrap();
    let submit = common::process::toolq(&[
        "submit",
        file.to_str().unwrap(),
        "--queue",
        &side,
        "--no-check",
    ])
    .env("TOOLQ_REDIS_URL", &url)
    .output()
    .unwrap();
    let submit_err = String::from_utf8_lossy(&submit.stderr);
    assert_eq!(submit.status.code(), Some(3), "{submit_err}");
    assert!(submit_err.contains("out of memory"), "{submit_err}");
    assert!(submit.stdout.is_empty(), "no id printed: nothing went in");
    assert_eq!(pending_ids(&mut con, &side).await.len(), half);

    // The workers' outcomes are refused: each stalls and stops, exit 3.
    probe.release_held();
    let mut stalled = 0;
    for w in &mut workers {
        let status = w
            .wait_exit(WAIT)
            .expect("a worker whose writes Redis refuses stops");
        assert_eq!(status.code(), Some(3), "{}", w.log_text());
        assert!(w.log_text().contains("OOM"), "{}", w.log_text());
        stalled += 1;
    }
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).await;
    let restarted: Vec<WorkerProcess> = (0..2).map(|_| spawn(&url, &q, 4, &probe, &[])).collect();
    for id in &jobs {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let (lost, duplicates) = probe.lost_and_duplicates(&jobs);
    eprintln!(
        "maxmemory (noeviction): batch of {} jobs: {} enqueued and named, {} refused and named, 0 unaccounted; \
         enqueue/submit exit 3; workers stalled {stalled}/2; jobs {}, lost {lost}, \
         duplicates {duplicates} (re-runs of jobs whose outcome Redis refused), ran twice at once {}",
        batch.len(),
        p.enqueued.len(),
        p.not_enqueued.len(),
        jobs.len(),
        probe.overlapped()
    );
    assert_eq!(lost, 0);
    for w in &restarted {
        w.signal(libc::SIGTERM);
    }
}

/// An evicting `maxmemory-policy` may delete queue keys and their jobs:
/// the worker refuses to start (exit 2, saying what to change), unless
/// `allow_evicting_redis` accepts the risk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_refused_unless_explicitly_allowed() {
    let server = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"])
        .expect("redis-server starts");
    let url = server.url();
    let q = queue_name("evict");
    let mut con = raw(&url).await;
    let refused = common::process::toolq(&["worker", "--queue", &q, "--http-addr", "off"])
        .env("TOOLQ_REDIS_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    for needle in ["allkeys-lru", "noeviction", "allow_evicting_redis"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert_eq!(
        zcard(&mut con, &QueueKeys::new(&q).workers).await,
        0,
        "never registered"
    );

    let mut cmd = common::process::toolq(&["worker", "--queue", &q, "--http-addr", "off"]);
    cmd.env("TOOLQ_REDIS_URL", &url)
        .env("TOOLQ_ALLOW_EVICTING_REDIS", "true");
    let mut allowed = common::process::Toolq::spawn(cmd);
    lpush(
        &mut con,
        &q,
        &[json!({"tool": "echo", "args": {}, "id": "e1"}).to_string()],
    )
    .await;
    let r = wait_result(&mut con, &q, "e1", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    allowed.wait_for_stderr("allkeys-lru", WAIT).await;
    allowed.terminate();
    assert!(allowed.wait(WAIT).await.success());
    eprintln!("evicting redis (allkeys-lru): refused with exit 2; with allow_evicting_redis it runs and warns");
}

/// Redis full for three heartbeat timeouts while two workers hold running
/// jobs and write nothing but heartbeats (refused, like every write): when
/// memory frees, neither worker may take the other for dead, since both
/// were silenced alike. No job recovered, none run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_refused_for_lack_of_memory_declare_nobody_dead() {
    let server = redis();
    let url = server.url();
    let q = queue_name("oombeat");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let probe = Probe::start().await;
    let a = spawn(&url, &q, 2, &probe, &[]);
    let a_id = worker_id_of(&mut con, &q, a.pid(), WAIT).await;
    let b = spawn(&url, &q, 2, &probe, &[]);
    let b_id = worker_id_of(&mut con, &q, b.pid(), WAIT).await;
    let jobs = ids("hb", 4);
    let held: Vec<String> = jobs
        .iter()
        .map(|id| probe_job(id, json!({"hold": true})))
        .collect();
    lpush(&mut con, &q, &held).await;
    wait_held(&mut con, &q, &a_id, 2).await;
    wait_held(&mut con, &q, &b_id, 2).await;
    redis_cmd(
        &mut con,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "1"]).await;
    let full_at = redis_time_ms(&mut con).await;
    until_redis_time(&mut con, full_at + 3000).await;
    redis_cmd(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).await;
    let freed_at = redis_time_ms(&mut con).await;
    // Both beat again, and reapers have had three timeouts to misjudge.
    until_redis_time(&mut con, freed_at + 3000).await;
    let held_a = held_count(&mut con, &k.active(&a_id)).await;
    let held_b = held_count(&mut con, &k.active(&b_id)).await;
    probe.release_held();
    for id in &jobs {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let (lost, duplicates) = probe.lost_and_duplicates(&jobs);
    let declared = a.log_lines("declared dead") + b.log_lines("declared dead");
    eprintln!(
        "heartbeats refused (maxmemory) for 3 s, timeout 1 s: jobs {}, lost {lost}, \
         duplicates {duplicates}, ran twice at once {}, declared dead {declared}",
        jobs.len(),
        probe.overlapped()
    );
    assert_eq!((held_a, held_b), (2, 2), "nothing recovered");
    assert_eq!((lost, duplicates, declared), (0, 0, 0));
    for w in [a, b] {
        w.signal(libc::SIGTERM);
    }
}
