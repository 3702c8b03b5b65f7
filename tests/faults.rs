//! Fault tests with real processes: `toolq worker` binaries and a real
//! `redis-server`, killed, stopped, paused and restarted. Every job is a
//! `count` job (a test tool) that records its executions in Redis, so "lost"
//! and "duplicate" are read from Redis, per job id.
//!
//! The big scenarios run 20,000 (kill -9) and 10,000 (Redis restart) jobs;
//! `TOOLQ_FAULT_SCALE` scales them (e.g. `0.1` for a quick run, `5` for a
//! long one). Each prints its figures: run with `--nocapture` to see them.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::queue::QueueKeys;

/// The heavy scenarios take the whole machine; run them one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const KILL_EVERY: Duration = Duration::from_secs(2);
/// How long before a kill its burst of jobs is pushed.
const BURST_LEAD: Duration = Duration::from_millis(150);
/// Faster heartbeats for scenarios that wait for a recovery several times
/// (the kill -9 and restart scenarios keep the 1 s / 5 s defaults).
const FAST_BEAT: [(&str, &str); 2] = [
    ("TOOLQ_HEARTBEAT_INTERVAL_MS", "200"),
    ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1000"),
];

fn count_key(q: &str, id: &str) -> String {
    format!("faults:{q}:count:{id}")
}

fn count_job(q: &str, id: &str, ms: u64) -> String {
    json!({"tool": "count", "id": id, "args": {"key": count_key(q, id), "ms": ms}}).to_string()
}

/// `n` count jobs `{prefix}{i}`: half return at once, half sleep 1–20 ms.
fn count_jobs(q: &str, prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let payloads = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let ms = if i % 2 == 0 {
                0
            } else {
                1 + (i as u64 * 7) % 20
            };
            count_job(q, id, ms)
        })
        .collect();
    (ids, payloads)
}

type Con = redis::aio::MultiplexedConnection;

async fn processed(con: &mut Con, q: &str) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(&QueueKeys::new(q).stats)
        .arg("succeeded")
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

async fn mget(con: &mut Con, keys: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let part: Vec<Option<String>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(con)
            .await
            .unwrap();
        out.extend(part);
    }
    out
}

async fn results(con: &mut Con, q: &str, ids: &[String]) -> Vec<Option<Value>> {
    let k = QueueKeys::new(q);
    let names: Vec<String> = ids.iter().map(|id| k.result(id)).collect();
    mget(con, &names)
        .await
        .into_iter()
        .zip(ids)
        .map(|(r, id)| r.map(|t| serde_json::from_str(&toolq::job::expand_result(id, &t)).unwrap()))
        .collect()
}

async fn counts(con: &mut Con, q: &str, ids: &[String]) -> Vec<u64> {
    let names: Vec<String> = ids.iter().map(|id| count_key(q, id)).collect();
    mget(con, &names)
        .await
        .into_iter()
        .map(|c| c.map_or(0, |c| c.parse().unwrap()))
        .collect()
}

/// What the final state says: jobs without a succeeded result or never run
/// (lost), and executions beyond the first (duplicates).
struct Tally {
    lost: Vec<String>,
    duplicates: u64,
}

async fn tally(con: &mut Con, q: &str, ids: &[String]) -> Tally {
    let res = results(con, q, ids).await;
    let cnt = counts(con, q, ids).await;
    let mut lost = Vec::new();
    let mut duplicates = 0;
    for ((id, r), c) in ids.iter().zip(&res).zip(&cnt) {
        let ok = r.as_ref().is_some_and(|r| r["status"] == "succeeded");
        if !ok || *c == 0 {
            lost.push(id.clone());
        }
        duplicates += c.saturating_sub(1);
    }
    Tally { lost, duplicates }
}

async fn wait_processed(con: &mut Con, q: &str, n: u64, within: Duration) {
    let start = Instant::now();
    while processed(con, q).await < n {
        if start.elapsed() > within {
            panic!(
                "only {} of {n} jobs processed after {within:?}; {}",
                processed(con, q).await,
                snapshot(con, q).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a queue's jobs are, for failure messages.
async fn snapshot(con: &mut Con, q: &str) -> String {
    let k = QueueKeys::new(q);
    let mut out = format!(
        "pending={} delayed={} dead={}",
        llen(con, &k.pending).await,
        zcard(con, &k.delayed).await,
        zcard(con, &k.dead).await
    );
    let held: Vec<String> = redis::cmd("KEYS")
        .arg(k.active_pattern())
        .query_async(con)
        .await
        .unwrap();
    for key in held {
        let n: u64 = if key.ends_with(":landing") {
            llen(con, &key).await
        } else {
            held_count(con, &key).await
        };
        out.push_str(&format!(" {key}={n}"));
    }
    out
}

/// Nothing left held by any worker, nothing pending.
async fn assert_drained(con: &mut Con, q: &str) {
    let k = QueueKeys::new(q);
    assert_eq!(llen(con, &k.pending).await, 0, "pending is empty");
    let held: Vec<String> = redis::cmd("KEYS")
        .arg(k.active_pattern())
        .query_async(con)
        .await
        .unwrap();
    assert!(held.is_empty(), "no worker holds jobs: {held:?}");
}

/// SIGTERM everyone and expect a clean exit.
fn stop_all(workers: impl IntoIterator<Item = WorkerProcess>) {
    let mut workers: Vec<_> = workers.into_iter().collect();
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in &mut workers {
        let status = w.wait_exit(Duration::from_secs(30)).expect("worker exits");
        assert!(status.success(), "{status:?}; log {}", w.log.display());
    }
}

/// What became of one SIGKILLed worker's jobs.
struct Kill {
    held: usize,
    /// Kill until its active hash and landing list were emptied by recovery.
    reclaimed: Duration,
    /// Kill until every job it held had a result again.
    rerun: Duration,
}

async fn watch_recovery(
    url: String,
    q: String,
    dead: String,
    held: Vec<String>,
    killed_at: Instant,
) -> Kill {
    let mut con = raw(&url).await;
    let k = QueueKeys::new(&q);
    let mut reclaimed = None;
    loop {
        if reclaimed.is_none() {
            let (h, l): (u64, u64) = redis::pipe()
                .hlen(k.active(&dead))
                .llen(k.landing(&dead))
                .query_async(&mut con)
                .await
                .unwrap();
            if h + l == 0 {
                reclaimed = Some(killed_at.elapsed());
            }
        }
        if let Some(reclaimed) = reclaimed {
            let res = results(&mut con, &q, &held).await;
            if res.iter().all(|r| r.is_some()) {
                return Kill {
                    held: held.len(),
                    reclaimed,
                    rerun: killed_at.elapsed(),
                };
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "jobs of killed worker {dead} not recovered within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn secs(ds: impl Iterator<Item = Duration>) -> String {
    let v: Vec<String> = ds.map(|d| format!("{:.2}", d.as_secs_f64())).collect();
    format!("[{}]", v.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_every_2_s_loses_no_job() {
    let _heavy = HEAVY.lock().await;
    let n = scaled(20_000);
    let server = redis();
    let url = server.url();
    let q = queue_name("kill9");
    let mut con = raw(&url).await;
    let (ids, payloads) = count_jobs(&q, "k", n);
    // A quarter at once, the rest in bursts that land just before each kill,
    // so every kill hits busy workers (toolq drains 20,000 queued jobs in a
    // few seconds: all at once, only the first kill or two would).
    let (backlog, stream) = payloads.split_at(n / 4);
    lpush(&mut con, &q, backlog).await;
    let mut bursts = stream.chunks((n * 3 / 40).max(1));

    let start = Instant::now();
    let mut workers: VecDeque<WorkerProcess> = (0..3)
        .map(|_| spawn_worker_process(&url, &q, 50, &[]))
        .collect();
    let mut watchers = Vec::new();
    loop {
        tokio::time::sleep(KILL_EVERY - BURST_LEAD).await;
        let Some(burst) = bursts.next() else {
            // Nothing left to interrupt: let the last recoveries finish.
            wait_processed(&mut con, &q, n as u64, Duration::from_secs(60)).await;
            break;
        };
        lpush(&mut con, &q, burst).await;
        tokio::time::sleep(BURST_LEAD).await;
        let mut victim = workers.pop_front().unwrap();
        let id = worker_id_of(&mut con, &q, victim.pid(), Duration::from_secs(10)).await;
        // Freeze it first so the jobs it holds can be counted exactly.
        victim.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = held_jobs(&mut con, &q, &id).await;
        victim.signal(libc::SIGKILL);
        let killed_at = Instant::now();
        victim.wait_exit(Duration::from_secs(10)).expect("killed");
        workers.push_back(spawn_worker_process(&url, &q, 50, &[]));
        watchers.push(tokio::spawn(watch_recovery(
            url.clone(),
            q.clone(),
            id,
            held,
            killed_at,
        )));
    }
    let elapsed = start.elapsed();
    let mut kills = Vec::new();
    for w in watchers {
        kills.push(w.await.unwrap());
    }
    let t = tally(&mut con, &q, &ids).await;
    let in_flight: usize = kills.iter().map(|k| k.held).sum();
    println!(
        "kill -9: jobs={n} kills={} lost={} duplicates={} in_flight_at_kills={in_flight} \
         run={:.1}s held_per_kill={:?} kill_to_reclaimed_s={} kill_to_rerun_s={}",
        kills.len(),
        t.lost.len(),
        t.duplicates,
        elapsed.as_secs_f64(),
        kills.iter().map(|k| k.held).collect::<Vec<_>>(),
        secs(kills.iter().map(|k| k.reclaimed)),
        secs(kills.iter().map(|k| k.rerun)),
    );
    assert!(!kills.is_empty(), "the run outlasted at least one kill");
    assert!(
        t.lost.is_empty(),
        "lost jobs: {:?}",
        &t.lost[..t.lost.len().min(20)]
    );
    assert!(
        t.duplicates <= in_flight as u64,
        "{} duplicate executions, but only {in_flight} jobs were held at the kills",
        t.duplicates
    );
    assert_drained(&mut con, &q).await;
    stop_all(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_no_job_and_workers_idle_while_it_is_down() {
    let _heavy = HEAVY.lock().await;
    let n = scaled(10_000);
    let mut server = toolq::redis_server::RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])
    .expect("redis-server starts");
    let url = server.url();
    let q = queue_name("restart");
    let mut con = raw(&url).await;
    let (ids, payloads) = count_jobs(&q, "r", n);
    lpush(&mut con, &q, &payloads).await;
    let start = Instant::now();
    let workers: Vec<WorkerProcess> = (0..2)
        .map(|_| spawn_worker_process(&url, &q, 50, &[]))
        .collect();
    wait_processed(&mut con, &q, n as u64 / 3, Duration::from_secs(120)).await;
    let before = processed(&mut con, &q).await;
    drop(con);

    server.stop();
    let down_at = Instant::now();
    // Let every loop notice, then measure how busy each worker is. Down for
    // longer than the 5 s heartbeat timeout: when Redis returns, every
    // heartbeat in it is stale, and no worker may take that as death.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_shares(&workers, Duration::from_secs(5));
    server.restart().expect("redis-server restarts");
    let downtime = down_at.elapsed();
    let up_at = Instant::now();

    let mut con = raw(&url).await;
    wait_processed(&mut con, &q, n as u64, Duration::from_secs(120)).await;
    let resumed = up_at.elapsed();
    let t = tally(&mut con, &q, &ids).await;
    let unreachable: Vec<usize> = workers
        .iter()
        .map(|w| w.log_lines("redis unreachable"))
        .collect();
    println!(
        "redis restart: jobs={n} processed_before_stop={before} downtime={:.1}s \
         lost={} duplicates={} worker_cpu_while_down={:?} unreachable_log_lines={unreachable:?} \
         restart_to_all_done={:.1}s run={:.1}s",
        downtime.as_secs_f64(),
        t.lost.len(),
        t.duplicates,
        cpu.iter()
            .map(|c| format!("{:.1}%", c * 100.0))
            .collect::<Vec<_>>(),
        resumed.as_secs_f64(),
        start.elapsed().as_secs_f64(),
    );
    assert!(
        t.lost.is_empty(),
        "lost jobs: {:?}",
        &t.lost[..t.lost.len().min(20)]
    );
    for (w, c) in workers.iter().zip(&cpu) {
        assert!(
            *c < 0.2,
            "worker busy while redis was down: {c}; log {}",
            w.log.display()
        );
    }
    for (w, lines) in workers.iter().zip(&unreachable) {
        assert_eq!(*lines, 1, "one outage, one line; log {}", w.log.display());
        assert_eq!(w.log_lines("reachable again"), 1, "log {}", w.log.display());
        assert_eq!(
            w.log_lines("recovered the jobs of a dead worker"),
            0,
            "nobody died; log {}",
            w.log.display()
        );
    }
    assert_drained(&mut con, &q).await;
    stop_all(workers);
}

/// Worker A (fast heartbeat, concurrency 10) running `n` count jobs of
/// `ms` each, every one started once: (A, its id, the job ids).
async fn worker_running_jobs(
    con: &mut Con,
    url: &str,
    q: &str,
    prefix: &str,
    n: usize,
    ms: u64,
) -> (WorkerProcess, String, Vec<String>) {
    let a = spawn_worker_process(url, q, 10, &FAST_BEAT);
    let a_id = worker_id_of(con, q, a.pid(), Duration::from_secs(10)).await;
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let payloads: Vec<String> = ids.iter().map(|id| count_job(q, id, ms)).collect();
    lpush(con, q, &payloads).await;
    wait_held(con, q, &a_id, n as u64).await;
    eventually(Duration::from_secs(10), "every job started on A", || {
        let (mut con, q, ids) = (con.clone(), q.to_owned(), ids.clone());
        async move { counts(&mut con, &q, &ids).await.iter().all(|c| *c == 1) }
    })
    .await;
    (a, a_id, ids)
}

async fn wait_held(con: &mut Con, q: &str, worker: &str, n: u64) {
    let k = QueueKeys::new(q);
    let start = Instant::now();
    while held_count(con, &k.active(worker)).await < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{worker} never held {n} jobs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when `worker` is neither in the queue's worker set nor registered.
async fn deregistered(con: &mut Con, q: &str, worker: &str) -> bool {
    let (score, info): (Option<f64>, Option<String>) = redis::pipe()
        .zscore(&QueueKeys::new(q).workers, worker)
        .get(toolq::queue::keys::worker_info(worker))
        .query_async(con)
        .await
        .unwrap();
    score.is_none() && info.is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_then_exits_0_and_deregisters() {
    let server = redis();
    let url = server.url();
    let q = queue_name("term");
    let mut con = raw(&url).await;
    let mut w = spawn_worker_process(&url, &q, 50, &[]);
    let id = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = sleep_jobs("s", 50, 1000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &id, 50).await;

    w.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = w
        .wait_exit(Duration::from_secs(25))
        .expect("exits within the grace");
    let took = signalled.elapsed();
    println!(
        "graceful: 50 jobs of 1 s finished, exit {status:?} {:.2}s after SIGTERM",
        took.as_secs_f64()
    );
    assert!(status.success(), "{status:?}");
    for r in results(&mut con, &q, &ids).await {
        let r = r.expect("every running job finished and has a result");
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
    assert_eq!(
        held_count(&mut con, &QueueKeys::new(&q).active(&id)).await,
        0
    );
    assert_drained(&mut con, &q).await;
    assert!(deregistered(&mut con, &q, &id).await, "{id} deregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_the_grace_goes_back_unspent_and_another_worker_finishes_it() {
    let server = redis();
    let url = server.url();
    let q = queue_name("grace");
    let mut con = raw(&url).await;
    let k = QueueKeys::new(&q);
    let mut w = spawn_worker_process(&url, &q, 4, &[("TOOLQ_SHUTDOWN_GRACE_S", "1")]);
    let first = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let payload = json!({"tool": "sleep", "id": "long", "args": {"ms": 5000}}).to_string();
    lpush(&mut con, &q, std::slice::from_ref(&payload)).await;
    wait_held(&mut con, &q, &first, 1).await;

    w.signal(libc::SIGTERM);
    let status = w
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the grace");
    assert!(status.success(), "{status:?}");
    let pending: Vec<String> = redis::cmd("LRANGE")
        .arg(&k.pending)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        pending,
        [payload],
        "put back as it was: no attempt, no recovery spent"
    );
    assert!(deregistered(&mut con, &q, &first).await);
    assert!(
        w.log_lines("put unfinished jobs back") == 1,
        "log {}",
        w.log.display()
    );

    let w2 = spawn_worker_process(&url, &q, 4, &[]);
    let second = worker_id_of(&mut con, &q, w2.pid(), Duration::from_secs(10)).await;
    let r = wait_result(&mut con, &q, "long", Duration::from_secs(20)).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(r["recoveries"], 0, "{r}");
    assert_eq!(r["worker"], second.as_str(), "{r}");
    stop_all([w2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_stops_at_once_and_puts_the_jobs_back() {
    let server = redis();
    let url = server.url();
    let q = queue_name("twice");
    let mut con = raw(&url).await;
    let k = QueueKeys::new(&q);
    let mut w = spawn_worker_process(&url, &q, 20, &[]);
    let id = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    // Longer than the default 25 s grace: only the second signal can end it early.
    let (_, payloads) = sleep_jobs("t", 20, 60_000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &id, 20).await;

    w.signal(libc::SIGTERM);
    eventually(
        Duration::from_secs(10),
        "the first signal to be taken",
        || {
            let lines = w.log_lines("stopping: no new jobs");
            async move { lines > 0 }
        },
    )
    .await;
    w.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = w
        .wait_exit(Duration::from_secs(15))
        .expect("the second signal cuts the 25 s grace short");
    println!(
        "second signal: exit {status:?} {:.2}s after it",
        signalled.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{status:?}");
    assert_eq!(
        llen(&mut con, &k.pending).await,
        20,
        "every job back in pending"
    );
    assert_eq!(held_count(&mut con, &k.active(&id)).await, 0);
    assert!(deregistered(&mut con, &q, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_is_buried_as_poison_and_the_rest_finish() {
    let server = redis();
    let url = server.url();
    let q = queue_name("poison");
    let mut con = raw(&url).await;
    let k = QueueKeys::new(&q);
    let env = [("TOOLQ_MAX_RECOVERIES", "2"), FAST_BEAT[0], FAST_BEAT[1]];
    let (ids, mut payloads) = count_jobs(&q, "p", 300);
    let crash = json!({"tool": "crash", "id": "poison", "args": {}}).to_string();
    payloads.insert(150, crash);
    lpush(&mut con, &q, &payloads).await;
    let mut workers: Vec<WorkerProcess> = (0..2)
        .map(|_| spawn_worker_process(&url, &q, 10, &env))
        .collect();

    let start = Instant::now();
    let mut crashes = 0;
    loop {
        for w in workers.iter_mut() {
            if let Some(status) = w.exited() {
                assert!(
                    !status.success(),
                    "only the poison job ends a worker: {status:?}"
                );
                crashes += 1;
                *w = spawn_worker_process(&url, &q, 10, &env);
            }
        }
        if zcard(&mut con, &k.dead).await > 0 && processed(&mut con, &q).await >= 300 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "poison job never buried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = dead_entries(&mut con, &q).await;
    println!(
        "poison: crashes={crashes} dead={} took={:.1}s",
        dead.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["job"]["id"], "poison");
    assert_eq!(dead[0]["error"]["kind"], "poisoned");
    assert_eq!(
        dead[0]["job"]["recoveries"], 3,
        "died once, then twice more after recovery"
    );
    assert_eq!(crashes, 3);
    let r = wait_result(&mut con, &q, "poison", Duration::from_secs(10)).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert_eq!(r["error"]["kind"], "poisoned", "{r}");
    let t = tally(&mut con, &q, &ids).await;
    assert!(t.lost.is_empty(), "{:?}", t.lost);
    assert_drained(&mut con, &q).await;
    stop_all(workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_loses_its_jobs_and_its_late_outcomes_are_dropped() {
    let server = redis();
    let url = server.url();
    let q = queue_name("fence");
    let mut con = raw(&url).await;
    let (a, a_id, ids) = worker_running_jobs(&mut con, &url, &q, "f", 10, 3000).await;

    // A freezes mid-job (a long GC pause, a stopped container); B takes over.
    a.signal(libc::SIGSTOP);
    let b = spawn_worker_process(&url, &q, 10, &FAST_BEAT);
    let b_id = worker_id_of(&mut con, &q, b.pid(), Duration::from_secs(10)).await;
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        assert_eq!(r["worker"], b_id.as_str(), "{r}");
        assert_eq!(r["recoveries"], 1, "{r}");
    }
    // A wakes up with its sleeps long over: whatever it finishes is stale.
    a.signal(libc::SIGCONT);
    eventually(
        Duration::from_secs(10),
        "A to notice it was declared dead",
        || {
            let lines = a.log_lines("declared dead");
            async move { lines > 0 }
        },
    )
    .await;
    let stale: usize = a
        .log_text()
        .lines()
        .filter(|l| l.contains("dropped outcomes"))
        .filter_map(|l| {
            l.split("stale=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    println!("fencing: 10 jobs taken over by {b_id}; stale outcomes dropped by {a_id}: {stale} (the rest cancelled)");

    // A carries on as a healthy worker.
    stop_all([b]);
    let more: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    let payloads: Vec<String> = more.iter().map(|id| count_job(&q, id, 0)).collect();
    lpush(&mut con, &q, &payloads).await;
    for id in &more {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(20)).await;
        assert_eq!(r["worker"], a_id.as_str(), "{r}");
    }
    // A's acker writes in order: with these written, whatever A finished of
    // the taken-over jobs before noticing has been tried and dropped.
    for r in results(&mut con, &q, &ids).await {
        let r = r.unwrap();
        assert_eq!(r["worker"], b_id.as_str(), "B's outcome stands: {r}");
    }
    assert!(counts(&mut con, &q, &ids).await.iter().all(|c| *c == 2));
    stop_all([a]);
}

/// Redis stalls (`DEBUG SLEEP`) past the worker's response timeout with a
/// fetch waiting: the fetch runs when Redis wakes, but its reply goes to a
/// caller that gave up. The jobs it moved must not sit in the active hash of
/// a live worker that never heard of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_fetch_whose_reply_was_lost_are_put_back() {
    let server = toolq::redis_server::RedisServer::start_with(&["--enable-debug-command", "yes"])
        .expect("redis-server starts");
    let url = server.url();
    let q = queue_name("lostfetch");
    let mut con = raw(&url).await;
    let worker = start_worker(config(&url, &q, 1));
    let mut jobs = vec![json!({"tool": "sleep", "id": "first", "args": {"ms": 1000}}).to_string()];
    jobs.extend(
        (0..3).map(|i| json!({"tool": "echo", "id": format!("e{i}"), "args": {}}).to_string()),
    );
    lpush(&mut con, &q, &jobs).await;
    wait_held_any(&mut con, &q).await;
    // Stall Redis while `first` runs: its end frees the one permit and the
    // next fetch waits in Redis's socket until after the worker's timeout.
    // The worker gives up on a reply after 10 s (its response timeout).
    let mut stall = raw(&url).await;
    tokio::spawn(async move {
        let _: Result<(), _> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(12)
            .query_async(&mut stall)
            .await;
    });
    // Our own connections would time out too: look only once Redis is back.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let mut con = raw(&url).await;
    for id in ["first", "e0", "e1", "e2"] {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert_drained(&mut con, &q).await;
    assert_eq!(processed(&mut con, &q).await, 4);
    worker.stop().await;
}

async fn wait_held_any(con: &mut Con, q: &str) {
    let k = QueueKeys::new(q);
    let start = Instant::now();
    loop {
        let held: Vec<String> = redis::cmd("KEYS")
            .arg(k.active_pattern())
            .query_async(con)
            .await
            .unwrap();
        if !held.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "nothing fetched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The paused worker wakes while its jobs are still running: its heartbeat
/// learns they were taken over and cancels them, so nothing of theirs is
/// written and they run no further on this worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_it_was_declared_dead_cancels_its_running_jobs() {
    let server = redis();
    let url = server.url();
    let q = queue_name("cancel");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let (a, a_id, ids) = worker_running_jobs(&mut con, &url, &q, "c", 5, 5000).await;

    a.signal(libc::SIGSTOP);
    let b = spawn_worker_process(&url, &q, 10, &FAST_BEAT);
    eventually(Duration::from_secs(10), "B to take A's jobs", || {
        let (mut con, key) = (con.clone(), k.active(&a_id));
        async move { held_count(&mut con, &key).await == 0 }
    })
    .await;
    let a_log = a.log.clone();
    // A's jobs have seconds left to run when it wakes. Either worker may
    // run the recovered jobs (A registers again at once).
    a.signal(libc::SIGCONT);
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["recoveries"], 1, "{r}");
    }
    assert!(a.log_lines("declared dead") >= 1, "log {}", a.log.display());
    assert_eq!(
        a.log_lines("dropped outcomes"),
        0,
        "cancelled, not finished"
    );
    assert_eq!(a.log_lines("already settled"), 0, "cancelled, not finished");
    assert!(counts(&mut con, &q, &ids).await.iter().all(|c| *c == 2));
    stop_all([a, b]);
    assert_drained(&mut con, &q).await;
    // Cancelled jobs leave the in-flight count (gauge and /health) too.
    let a_log = std::fs::read_to_string(&a_log).unwrap();
    assert!(
        a_log.contains("stopping: no new jobs in_flight=0"),
        "{a_log}"
    );
}

/// SIGTERM while Redis is down: finished outcomes cannot be written, the
/// acker gives up after its flush wait, and the worker still exits 0. The
/// jobs stay in its active hash (AOF keeps them) and are recovered by the
/// next worker once Redis is back: late, but not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_during_an_outage_exits_and_its_jobs_are_recovered_later() {
    let mut server = toolq::redis_server::RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])
    .expect("redis-server starts");
    let url = server.url();
    let q = queue_name("giveup");
    let mut con = raw(&url).await;
    let mut a = spawn_worker_process(&url, &q, 5, &FAST_BEAT);
    let a_id = worker_id_of(&mut con, &q, a.pid(), Duration::from_secs(10)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("g{i}")).collect();
    let payloads: Vec<String> = ids.iter().map(|id| count_job(&q, id, 1000)).collect();
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &a_id, 5).await;
    // The jobs are running on A, not just held.
    eventually(Duration::from_secs(10), "every job started on A", || {
        let (mut con, q, ids) = (con.clone(), q.clone(), ids.clone());
        async move { counts(&mut con, &q, &ids).await.iter().all(|c| *c == 1) }
    })
    .await;
    drop(con);

    server.stop();
    // The jobs finish while Redis is away; their outcomes wait in memory.
    std::thread::sleep(Duration::from_millis(1500));
    a.signal(libc::SIGTERM);
    let status = a
        .wait_exit(Duration::from_secs(30))
        .expect("exits though Redis is down");
    assert!(status.success(), "{status:?}; log {}", a.log.display());
    assert!(
        a.log_lines("giving up writing an outcome") >= 1,
        "log {}",
        a.log.display()
    );

    server.restart().expect("redis-server restarts");
    let mut con = raw(&url).await;
    let b = spawn_worker_process(&url, &q, 5, &FAST_BEAT);
    let b_id = worker_id_of(&mut con, &q, b.pid(), Duration::from_secs(10)).await;
    for r in results(&mut con, &q, &ids).await {
        assert!(r.is_none(), "nothing was written by A: {r:?}");
    }
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["worker"], b_id.as_str(), "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
    stop_all([b]);
    assert_drained(&mut con, &q).await;
}

/// A Redis restart that lost everything (no persistence): the worker says
/// Redis lost its registration, not that it was declared dead, registers
/// again (worker set and queue registry) and serves new jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_lost_everything_is_logged_as_such_and_the_worker_goes_on() {
    let mut server = toolq::redis_server::RedisServer::start().expect("redis-server starts");
    let url = server.url();
    let q = queue_name("lost");
    let k = QueueKeys::new(&q);
    let w = spawn_worker_process(&url, &q, 4, &FAST_BEAT);
    let registered = |url: String, key: String| async move {
        let mut con = raw(&url).await;
        zcard(&mut con, &key).await == 1
    };
    eventually(Duration::from_secs(20), "the worker's registration", || {
        registered(url.clone(), k.workers.clone())
    })
    .await;
    // A beat after the registration: the heartbeat has seen the server.
    let mut con = raw(&url).await;
    let first = worker_score(&mut con, &k.workers).await;
    eventually(Duration::from_secs(20), "a heartbeat", || {
        let mut con = con.clone();
        let key = k.workers.clone();
        async move { worker_score(&mut con, &key).await != first }
    })
    .await;
    drop(con);

    // No --appendonly, no --save: the new server starts empty.
    server.restart().expect("redis-server restarts");
    eventually(Duration::from_secs(30), "the log line", || {
        let n = w.log_lines("Redis lost this worker's registration");
        async move { n >= 1 }
    })
    .await;
    assert_eq!(
        w.log_lines("declared dead"),
        0,
        "nobody declared it dead; log {}",
        w.log.display()
    );
    eventually(
        Duration::from_secs(20),
        "the worker registered again",
        || registered(url.clone(), k.workers.clone()),
    )
    .await;
    let mut con = raw(&url).await;
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg(toolq::queue::keys::QUEUES)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        queues.contains(&q),
        "back in the queue registry: {queues:?}"
    );
    let job = json!({"tool": "echo", "args": {"after": "restart"}, "id": "after-restart"});
    lpush(&mut con, &q, &[job.to_string()]).await;
    let r = wait_result(&mut con, &q, "after-restart", Duration::from_secs(30)).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    stop_all([w]);
}

/// The score of the only member of a worker set (its last heartbeat).
async fn worker_score(con: &mut Con, key: &str) -> Option<f64> {
    let v: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async(con)
        .await
        .unwrap();
    v.first().map(|(_, s)| *s)
}

/// Whether worker `id` has a connection blocked in `BLMOVE`: its wait,
/// with the fetch sent behind it still to run.
async fn waiting(con: &mut redis::aio::MultiplexedConnection, id: &str) -> bool {
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(con)
        .await
        .unwrap();
    let name = format!("name={}", toolq::queue::keys::connection_name(id));
    clients.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.contains(&name.as_str())
            && fields.contains(&"cmd=blmove")
            && fields
                .iter()
                .any(|f| f.strip_prefix("flags=").is_some_and(|v| v.contains('b')))
    })
}

/// An idle worker's wait carries a fetch that runs when a job lands, maybe
/// long after it was sent. A worker frozen in its wait (a stopped
/// container, a long pause) whose heartbeat has gone stale meanwhile takes
/// nothing: the job stays pending, and a live worker runs it at once, as a
/// job never held (no recovery counted), instead of after the frozen one
/// is declared dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_frozen_in_its_wait_takes_no_job_that_lands_once_its_heartbeat_is_stale() {
    let server = redis();
    let url = server.url();
    let q = queue_name("frozenwait");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let mut a = spawn_worker_process(&url, &q, 2, &FAST_BEAT);
    let a_id = worker_id_of(&mut con, &q, a.pid(), Duration::from_secs(10)).await;
    // One job first: A runs jobs, and its wait is sent again after it.
    lpush(&mut con, &q, &[count_job(&q, "first", 0)]).await;
    let r = wait_result(&mut con, &q, "first", Duration::from_secs(10)).await;
    assert_eq!(r["worker"], a_id.as_str(), "{r}");
    eventually(Duration::from_secs(10), "A's wait to block", || {
        let mut con = con.clone();
        let a_id = a_id.clone();
        async move { waiting(&mut con, &a_id).await }
    })
    .await;
    a.signal(libc::SIGSTOP);
    // Past the age a waiting fetch allows (0.8 s with this heartbeat),
    // well within the 10 s its wait blocks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(waiting(&mut con, &a_id).await, "A's wait is still pending");
    lpush(&mut con, &q, &[count_job(&q, "late", 0)]).await;
    eventually(Duration::from_secs(5), "A's wait to be served", || {
        let mut con = con.clone();
        let a_id = a_id.clone();
        async move { !waiting(&mut con, &a_id).await }
    })
    .await;
    assert_eq!(llen(&mut con, &k.pending).await, 1, "the job stays pending");
    assert!(!exists(&mut con, &k.active(&a_id)).await, "A holds nothing");

    let b = spawn_worker_process(&url, &q, 2, &FAST_BEAT);
    let b_id = worker_id_of(&mut con, &q, b.pid(), Duration::from_secs(10)).await;
    let r = wait_result(&mut con, &q, "late", Duration::from_secs(10)).await;
    assert_eq!(r["worker"], b_id.as_str(), "{r}");
    assert_eq!(r["recoveries"], 0, "never held by A: {r}");
    a.signal(libc::SIGCONT);
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(10));
    stop_all([b]);
}
