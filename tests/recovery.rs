//! Recovery within a second: a SIGKILLed worker's Redis connections close at
//! once, and a live worker's reaper recovers its jobs as soon as none of its
//! named connections is left and its heartbeat is past the interval plus
//! `disconnect_grace_ms` (default 1 s + 250 ms), instead of after the 5 s
//! heartbeat timeout. Real `toolq worker` processes and a real redis-server,
//! with the default heartbeat settings. Each test prints its figures (run
//! with `--nocapture`); they assert what must hold (0 lost, the reason of
//! each recovery), not wall-clock bounds.

mod common;

use std::time::{Duration, Instant};

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::queue::{keys, QueueKeys};

type Con = redis::aio::MultiplexedConnection;

/// The log line of a recovery, and the field that says why.
const RECOVERED: &str = "recovered the jobs of a dead worker";
const BY_CONNECTIONS: &str = "reason=\"disconnected\"";
const BY_TIMEOUT: &str = "reason=\"heartbeat_timeout\"";

fn count_key(q: &str, id: &str) -> String {
    format!("recovery:{q}:count:{id}")
}

fn count_job(q: &str, id: &str, ms: u64) -> String {
    json!({"tool": "count", "id": id, "args": {"key": count_key(q, id), "ms": ms}}).to_string()
}

async fn executions(con: &mut Con, q: &str, id: &str) -> u64 {
    let n: Option<u64> = redis::cmd("GET")
        .arg(count_key(q, id))
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Lines of all `logs` that contain every one of `needles`.
fn lines_with(logs: &[std::path::PathBuf], needles: &[&str]) -> usize {
    logs.iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .map(|t| {
            t.lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .count()
        })
        .sum()
}

/// Redis client ids of the connections named after `worker`.
async fn connection_ids(con: &mut Con, worker: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(con)
        .await
        .unwrap();
    let name = format!("name={}", keys::connection_name(worker));
    list.lines()
        .filter(|l| l.split(' ').any(|f| f == name))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// Closes every connection of `worker` from the server's side, as a
/// network reset or an operator's `CLIENT KILL` would. Returns how many.
async fn cut_connections(con: &mut Con, worker: &str) -> usize {
    let ids = connection_ids(con, worker).await;
    for id in &ids {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(con)
            .await
            .unwrap();
    }
    ids.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// 20 times: a job starts on one of two workers, that worker is SIGKILLed,
/// and the time until the job runs again (its second execution starts) is
/// taken. A replacement worker is started after each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_jobs_run_again_within_a_second() {
    const KILLS: usize = 20;
    let server = redis();
    let url = server.url();
    let q = queue_name("fastrecover");
    let mut con = raw(&url).await;
    let mut workers: Vec<WorkerProcess> = (0..2)
        .map(|_| spawn_worker_process(&url, &q, 4, &[]))
        .collect();
    for w in &workers {
        worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    }
    let mut logs: Vec<std::path::PathBuf> = workers.iter().map(|w| w.log.clone()).collect();
    let mut ids = Vec::new();
    let mut latencies = Vec::new();
    // How old the victim's heartbeat was at the kill (Redis ms).
    let mut ages = Vec::new();
    let mut starts = Vec::new();
    let start = Instant::now();
    for round in 0..KILLS {
        let id = format!("k{round}");
        // A kill at any point of the victim's heartbeat cycle, not just
        // after the first beat of a worker that has just started.
        tokio::time::sleep(Duration::from_millis((round as u64 * 389) % 1000)).await;
        // Long enough to be running at the kill, short enough that the
        // survivor is free again for the next round.
        lpush(&mut con, &q, &[count_job(&q, &id, 600)]).await;
        let pushed = Instant::now();
        ids.push(id.clone());
        eventually(Duration::from_secs(10), "the job starts", || {
            let (mut con, q, id) = (con.clone(), q.clone(), id.clone());
            async move { executions(&mut con, &q, &id).await == 1 }
        })
        .await;
        starts.push(pushed.elapsed().as_millis());
        let by_pid = worker_ids_by_pid(&mut con, &q).await;
        let mut holder = None;
        for (i, w) in workers.iter().enumerate() {
            if let Some(wid) = by_pid.get(&w.pid()) {
                if held_jobs(&mut con, &q, wid).await.contains(&id) {
                    holder = Some(i);
                }
            }
        }
        let victim = holder.unwrap_or_else(|| panic!("no worker holds {id}"));
        let mut victim = workers.remove(victim);
        let vid = by_pid[&victim.pid()].clone();
        victim.signal(libc::SIGKILL);
        let killed_at = Instant::now();
        let beat: Option<f64> = redis::cmd("ZSCORE")
            .arg(QueueKeys::new(&q).workers)
            .arg(&vid)
            .query_async(&mut con)
            .await
            .unwrap();
        ages.push(redis_time_ms(&mut con).await as f64 - beat.unwrap_or(0.0));
        victim.wait_exit(Duration::from_secs(10)).expect("killed");
        loop {
            if executions(&mut con, &q, &id).await >= 2 {
                latencies.push(killed_at.elapsed());
                break;
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(30),
                "{id} not running again 30 s after the kill"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let fresh = spawn_worker_process(&url, &q, 4, &[]);
        worker_id_of(&mut con, &q, fresh.pid(), Duration::from_secs(10)).await;
        logs.push(fresh.log.clone());
        workers.push(fresh);
    }
    let mut lost = Vec::new();
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        if r["status"] != "succeeded" || executions(&mut con, &q, id).await == 0 {
            lost.push(id.clone());
        }
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let by_connections = lines_with(&logs, &[RECOVERED, BY_CONNECTIONS]);
    let by_timeout = lines_with(&logs, &[RECOVERED, BY_TIMEOUT]);
    eprintln!(
        "kill -9 -> running again, {KILLS} kills: median {} p90 {} max {} min {}; lost {}; \
         recoveries by closed connections {by_connections}, by heartbeat timeout {by_timeout}; \
         run {:.1} s; all (ms) {:?}; heartbeat age at the kill (ms) {:?}; push to start (ms) {:?}",
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.9)),
        ms(sorted[sorted.len() - 1]),
        ms(sorted[0]),
        lost.len(),
        start.elapsed().as_secs_f64(),
        latencies.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
        ages,
        starts,
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(
        by_connections, KILLS,
        "every kill recovered through the connection check"
    );
    assert_eq!(by_timeout, 0, "none waited for the heartbeat timeout");

    // What the check costs Redis: CLIENT LIST with these workers and 60
    // more named clients, timed by Redis itself (INFO commandstats).
    let mut extra = Vec::new();
    for i in 0..60 {
        let mut c = raw(&url).await;
        redis_cmd(
            &mut c,
            &["CLIENT", "SETNAME", &format!("toolq:w:extra-{i}")],
        )
        .await;
        extra.push(c);
    }
    redis_cmd(&mut con, &["CONFIG", "RESETSTAT"]).await;
    let mut bytes = 0;
    for _ in 0..200 {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut con)
            .await
            .unwrap();
        bytes = list.len();
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    let line = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_client|list"))
        .unwrap_or_default()
        .to_owned();
    let clients = bytes / 300;
    eprintln!(
        "CLIENT LIST TYPE normal cost with ~{clients} clients ({bytes} bytes a reply): {line}"
    );
    drop(extra);
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    for w in &mut workers {
        w.wait_exit(Duration::from_secs(30)).expect("worker exits");
    }
}

/// Live workers whose connections go away for a moment must not be taken
/// for dead: three workers run a stream of jobs while (1) all connections
/// of one of them are cut (`CLIENT KILL`) ten times, (2) Redis stalls
/// (`CLIENT PAUSE` 2 s) twice and (3) Redis restarts twice with its data
/// (AOF), every worker's connections gone at once. Counts the live workers
/// wrongly recovered ("false positives") and the jobs lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_workers_whose_connections_drop_are_not_taken_for_dead() {
    let mut server = toolq::redis_server::RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])
    .expect("redis-server starts");
    let url = server.url();
    let q = queue_name("blips");
    let mut con = raw(&url).await;
    let workers: Vec<WorkerProcess> = (0..3)
        .map(|_| spawn_worker_process(&url, &q, 4, &[]))
        .collect();
    let mut wids = Vec::new();
    for w in &workers {
        wids.push(worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await);
    }
    let logs: Vec<std::path::PathBuf> = workers.iter().map(|w| w.log.clone()).collect();
    let mut ids = Vec::new();
    let mut push = |con: Con, n: usize| {
        let first = ids.len();
        let batch: Vec<String> = (first..first + n).map(|i| format!("b{i}")).collect();
        ids.extend(batch.iter().cloned());
        let q = q.clone();
        async move {
            let mut con = con;
            let payloads: Vec<String> = batch.iter().map(|id| count_job(&q, id, 300)).collect();
            lpush(&mut con, &q, &payloads).await;
        }
    };

    let mut false_positives = Vec::new();
    let recovered = || lines_with(&logs, &[RECOVERED]);

    // (1) Connections cut, at different points of the victims' heartbeat.
    let mut cut = 0;
    let mut reconnect_ages = Vec::new();
    for i in 0..10 {
        push(con.clone(), 6).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let victim = &wids[i % 3];
        cut += cut_connections(&mut con, victim).await;
        let cut_at = Instant::now();
        // Until the worker has a connection again: how old its heartbeat
        // got meanwhile, against the 1.25 s the reapers wait for.
        let mut oldest = 0.0f64;
        while connection_ids(&mut con, victim).await.is_empty()
            && cut_at.elapsed() < Duration::from_secs(5)
        {
            let beat: Option<f64> = redis::cmd("ZSCORE")
                .arg(QueueKeys::new(&q).workers)
                .arg(victim)
                .query_async(&mut con)
                .await
                .unwrap();
            let age = redis_time_ms(&mut con).await as f64 - beat.unwrap_or(0.0);
            oldest = oldest.max(age);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reconnect_ages.push(oldest as u64);
        let rest = Duration::from_millis(1300 + 97 * i as u64 % 700);
        tokio::time::sleep(rest.saturating_sub(cut_at.elapsed())).await;
    }
    false_positives.push((
        "CLIENT KILL of all of a worker's connections, 10 times",
        recovered(),
    ));

    // (2) Redis stalls: connections stay open, nobody beats for 2 s.
    for _ in 0..2 {
        push(con.clone(), 6).await;
        redis_cmd(&mut con, &["CLIENT", "PAUSE", "2000", "ALL"]).await;
        tokio::time::sleep(Duration::from_millis(4000)).await;
    }
    let before = recovered();
    false_positives.push(("CLIENT PAUSE 2 s, twice", before - false_positives[0].1));

    // (3) Redis restarts with its data: every connection of every worker
    // closes at once, and every heartbeat in Redis ages while it is down.
    for _ in 0..2 {
        push(con.clone(), 6).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(con);
        server.restart().expect("redis-server restarts");
        con = raw(&url).await;
        tokio::time::sleep(Duration::from_millis(3000)).await;
    }

    let mut lost = Vec::new();
    let mut duplicates = 0;
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        let n = executions(&mut con, &q, id).await;
        if r["status"] != "succeeded" || n == 0 {
            lost.push(id.clone());
        }
        duplicates += n.saturating_sub(1);
    }
    // Past the reapers' wait after an outage (the heartbeat timeout).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    false_positives.push(("redis-server restart (AOF), twice", recovered() - before));
    let declared_dead = lines_with(&logs, &["declared dead"]);
    eprintln!(
        "false positives (live workers recovered): {false_positives:?}; connections cut {cut}; \
         oldest heartbeat of a cut worker before it reconnected (ms) {reconnect_ages:?}; \
         jobs {} lost {} duplicates {duplicates}; 'declared dead' log lines {declared_dead}",
        ids.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    for (scenario, n) in &false_positives {
        assert_eq!(*n, 0, "{scenario}: live workers recovered");
    }
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
}

/// A false positive forced on purpose: worker A is frozen (SIGSTOP) with
/// jobs running until its heartbeat is past the short limit, then all its
/// connections are cut, so worker B's reaper takes it for dead through the
/// connection check and recovers its jobs. A then wakes up: nothing is lost,
/// the jobs ran twice (the cost of the false positive), and whatever A
/// finished late is fenced off: every result is B's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_false_positive_costs_duplicates_never_loss() {
    let server = redis();
    let url = server.url();
    let q = queue_name("forced");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let a = spawn_worker_process(&url, &q, 5, &[]);
    let a_id = worker_id_of(&mut con, &q, a.pid(), Duration::from_secs(10)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    let payloads: Vec<String> = ids.iter().map(|id| count_job(&q, id, 2000)).collect();
    lpush(&mut con, &q, &payloads).await;
    eventually(Duration::from_secs(10), "A runs all five", || {
        let (mut con, q, ids) = (con.clone(), q.clone(), ids.clone());
        async move {
            let mut all = true;
            for id in &ids {
                all &= executions(&mut con, &q, id).await == 1;
            }
            all
        }
    })
    .await;
    let b = spawn_worker_process(&url, &q, 5, &[]);
    let b_id = worker_id_of(&mut con, &q, b.pid(), Duration::from_secs(10)).await;

    a.signal(libc::SIGSTOP);
    // Past the interval plus the grace (1.25 s), well inside the 5 s timeout.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let cut = cut_connections(&mut con, &a_id).await;
    assert!(cut > 0, "A had connections open");
    let cut_at = Instant::now();
    eventually(Duration::from_secs(3), "B recovers A's jobs", || {
        let (mut con, key) = (con.clone(), k.active(&a_id));
        async move { held_count(&mut con, &key).await == 0 }
    })
    .await;
    let taken_over = cut_at.elapsed();
    a.signal(libc::SIGCONT);

    let mut lost = Vec::new();
    for id in &ids {
        let r = wait_result(&mut con, &q, id, Duration::from_secs(30)).await;
        if r["status"] != "succeeded" {
            lost.push(id.clone());
        }
        assert_eq!(r["worker"], b_id.as_str(), "B's outcome stands: {r}");
        assert_eq!(r["recoveries"], 1, "{r}");
    }
    eventually(Duration::from_secs(10), "A notices", || {
        let n = a.log_lines("declared dead");
        async move { n > 0 }
    })
    .await;
    // A's late outcomes, if it finished any before noticing, were dropped.
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
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(executions(&mut con, &q, id).await);
    }
    let by_connections = b.log_lines(RECOVERED) > 0
        && b.log_text()
            .lines()
            .any(|l| l.contains(RECOVERED) && l.contains(BY_CONNECTIONS));
    eprintln!(
        "forced false positive: {} connections cut, B recovered A's jobs {} later (via closed \
         connections: {by_connections}); lost {}; executions per job {runs:?}; A's late \
         outcomes dropped as stale {stale} (the rest cancelled)",
        cut,
        ms(taken_over),
        lost.len()
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(by_connections, "B's log: {}", b.log_text());
    assert!(runs.iter().all(|n| *n == 2), "each job ran on A and on B");
    let final_results: Vec<Value> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(wait_result(&mut con, &q, id, Duration::from_secs(5)).await);
        }
        v
    };
    assert!(final_results.iter().all(|r| r["worker"] == b_id.as_str()));
    for w in [&a, &b] {
        w.signal(libc::SIGTERM);
    }
}
