//! `prefetch`: a worker holds jobs beyond its concurrency, so the next batch
//! is fetched while this one runs. The cap on running jobs still holds, a
//! stop puts the prefetched jobs back without running them, an operator's
//! cancel settles a prefetched job at once, and a killed worker's
//! prefetched jobs are recovered like its running ones, while one paused
//! past its heartbeat timeout starts none of them on waking. A prefetch
//! beside a tool that must not run twice is warned of at start-up.

mod common;

use std::time::Duration;

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::queue::QueueKeys;

type Con = redis::aio::MultiplexedConnection;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_held(con: &mut Con, q: &str, worker: &str, n: u64) {
    let key = QueueKeys::new(q).active(worker);
    eventually(WAIT, &format!("{worker} holds {n} jobs"), || {
        let (mut con, key) = (con.clone(), key.clone());
        async move { held_count(&mut con, &key).await == n }
    })
    .await;
}

/// Most results whose run overlapped at any start instant.
fn max_overlap(results: &[Value]) -> usize {
    let spans: Vec<(u64, u64)> = results
        .iter()
        .map(|r| {
            (
                r["started_at"].as_u64().expect("started_at"),
                r["finished_at"].as_u64().expect("finished_at"),
            )
        })
        .collect();
    spans
        .iter()
        .map(|(s, _)| spans.iter().filter(|(s2, f2)| s2 <= s && s < f2).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_is_held_while_this_one_runs_and_the_cap_still_holds() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-cap");
    let mut con = raw(&url).await;
    let (cap, prefetch) = (4, 4);
    let w = spawn_worker_process(&url, &q, cap, &[("TOOLQ_PREFETCH", "4")]);
    let id = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = sleep_jobs("p", 16, 400);
    lpush(&mut con, &q, &payloads).await;
    // While the first 4 run, 4 more are held, fetched and waiting.
    wait_held(&mut con, &q, &id, (cap + prefetch) as u64).await;
    let mut results = Vec::new();
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        results.push(r);
    }
    assert_eq!(
        max_overlap(&results),
        cap,
        "prefetched jobs wait for a run slot: the cap is reached and never exceeded"
    );
    w.signal(libc::SIGTERM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_puts_prefetched_jobs_back_without_running_them() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-stop");
    let mut con = raw(&url).await;
    let mut w = spawn_worker_process(&url, &q, 2, &[("TOOLQ_PREFETCH", "4")]);
    let id = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = count_jobs(&q, "s", 6, 4000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &id, 6).await;
    // Held is not started: the stop comes once two jobs run (each counts
    // its start), not a moment after the fetch, when none may have yet
    // (a clean-clone CI saw all six put back and none run).
    eventually(WAIT, "two jobs started", || {
        let (mut con, q, ids) = (con.clone(), q.clone(), ids.clone());
        async move {
            let mut started = 0;
            for id in &ids {
                started += executions(&mut con, &q, id).await;
            }
            started == 2
        }
    })
    .await;

    // The grace (25 s) is long enough for the next two to run after the
    // first two; only the two running ones may.
    w.signal(libc::SIGTERM);
    let status = w
        .wait_exit(Duration::from_secs(30))
        .expect("exits within the grace");
    assert!(status.success(), "{status:?}");
    let mut ran = Vec::new();
    for id in &ids {
        if let Some(r) = result_of(&mut con, &q, id).await {
            assert_eq!(r["status"], "succeeded", "{r}");
            ran.push(id.clone());
        }
    }
    assert_eq!(ran.len(), 2, "only the running jobs finished: {ran:?}");
    for id in &ids {
        let runs = executions(&mut con, &q, id).await;
        assert_eq!(runs, u64::from(ran.contains(id)), "{id} ran {runs} time(s)");
    }
    let mut back = pending_ids(&mut con, &q).await;
    back.sort();
    let mut expected: Vec<String> = ids.iter().filter(|i| !ran.contains(i)).cloned().collect();
    expected.sort();
    assert_eq!(back, expected, "the prefetched jobs are pending again");
    assert_eq!(
        held_count(&mut con, &QueueKeys::new(&q).active(&id)).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_prefetched_jobs_are_recovered() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-kill");
    let mut con = raw(&url).await;
    let mut a = spawn_worker_process(&url, &q, 2, &[("TOOLQ_PREFETCH", "4")]);
    let a_id = worker_id_of(&mut con, &q, a.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = sleep_jobs("k", 6, 3000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &a_id, 6).await;
    let mut held = held_jobs(&mut con, &q, &a_id).await;
    held.sort();
    assert_eq!(held, ids, "A holds all six, four of them not started");

    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).expect("killed");
    let b = spawn_worker_process(&url, &q, 6, &[]);
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert!(pending_ids(&mut con, &q).await.is_empty());
    b.signal(libc::SIGTERM);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_job_cancelled_by_an_operator_is_settled_without_waiting_for_a_slot() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-cancel");
    let mut con = raw(&url).await;
    let w = spawn_worker_process(&url, &q, 1, &[("TOOLQ_PREFETCH", "2")]);
    let id = worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = sleep_jobs("c", 3, 8000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &id, 3).await;

    // c0 runs; c1 and c2 wait for its slot, 8 and 16 s away.
    let producer = toolq::producer::Producer::connect(&url, None).expect("producer");
    let asked = std::time::Instant::now();
    let outcome = producer.cancel(&q, &ids[2]).await.expect("cancel");
    println!("cancel of a prefetched job: {outcome:?}");
    let r = wait_result(&mut con, &q, &ids[2], WAIT).await;
    println!(
        "settled {:.2} s after the cancel",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(
        result_of(&mut con, &q, &ids[0]).await.is_none(),
        "settled while the job ahead of it still ran, not once it got a slot"
    );
    assert_eq!(
        held_count(&mut con, &QueueKeys::new(&q).active(&id)).await,
        2,
        "the other two still held"
    );
    w.signal(libc::SIGTERM);
}

/// `n` `count` jobs of `ms` each, ids `{prefix}0`…: each records its
/// starts under [`count_key`].
fn count_jobs(q: &str, prefix: &str, n: usize, ms: u64) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let payloads = ids
        .iter()
        .map(|id| {
            json!({"tool": "count", "id": id, "args": {"key": count_key(q, id), "ms": ms}})
                .to_string()
        })
        .collect();
    (ids, payloads)
}

fn count_key(q: &str, id: &str) -> String {
    format!("prefetch:{q}:count:{id}")
}

async fn executions(con: &mut Con, q: &str, id: &str) -> u64 {
    get(con, &count_key(q, id))
        .await
        .map_or(0, |n| n.parse().expect("a count"))
}

/// A worker frozen past its heartbeat timeout is declared dead, and its
/// jobs, prefetched ones included, run elsewhere. When it wakes, the job it
/// was running finishes at once (its sleep long over) and frees a slot
/// before its heartbeat has learned of the loss: the prefetched jobs must
/// not start then, or they run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_woken_after_being_declared_dead_starts_none_of_its_prefetched_jobs() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-pause");
    let mut con = raw(&url).await;
    let beat = [
        ("TOOLQ_HEARTBEAT_INTERVAL_MS", "200"),
        ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1000"),
    ];
    let mut env = beat.to_vec();
    env.push(("TOOLQ_PREFETCH", "2"));
    let a = spawn_worker_process(&url, &q, 1, &env);
    let a_id = worker_id_of(&mut con, &q, a.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = count_jobs(&q, "p", 3, 1500);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &a_id, 3).await;
    eventually(WAIT, "p0 started on A", || {
        let (mut con, q) = (con.clone(), q.clone());
        async move { executions(&mut con, &q, "p0").await == 1 }
    })
    .await;

    a.signal(libc::SIGSTOP);
    let b = spawn_worker_process(&url, &q, 3, &beat);
    let b_id = worker_id_of(&mut con, &q, b.pid(), Duration::from_secs(10)).await;
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["worker"], b_id.as_str(), "{r}");
    }
    a.signal(libc::SIGCONT);
    eventually(WAIT, "A to notice it was declared dead", || {
        let lines = a.log_lines("declared dead");
        async move { lines > 0 }
    })
    .await;
    // Time for a prefetched job to have started on A, had it been let.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for id in &ids[1..] {
        assert_eq!(
            executions(&mut con, &q, id).await,
            1,
            "{id} ran on B only; A's log:\n{}",
            a.log_text()
        );
    }
    a.signal(libc::SIGTERM);
    b.signal(libc::SIGTERM);
}

/// Jobs are FIFO within a shard: prefetched jobs start in the order they
/// were fetched, oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_jobs_start_in_the_order_they_were_fetched() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-order");
    let mut con = raw(&url).await;
    let w = spawn_worker_process(&url, &q, 1, &[("TOOLQ_PREFETCH", "5")]);
    worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(10)).await;
    let (ids, payloads) = sleep_jobs("o", 6, 100);
    // One push: the worker fetches all six in one batch, oldest first.
    lpush(&mut con, &q, &payloads).await;
    let mut starts = Vec::new();
    for id in &ids {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        starts.push((r["started_at"].as_u64().expect("started_at"), id.clone()));
    }
    let mut by_start = starts.clone();
    by_start.sort();
    assert_eq!(by_start, starts, "started in fetch order");
    w.signal(libc::SIGTERM);
}

/// A prefetching worker that serves a tool that must not run twice warns at
/// start-up, naming the tool: if it dies, that tool's prefetched jobs that
/// never started are buried as `interrupted` too. Without a prefetch it
/// says nothing. The tool is the MCP fixture's, its server configured with
/// `redeliver = false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetch_beside_a_tool_that_must_not_run_twice_is_warned_of_at_start_up() {
    let server = redis();
    let url = server.url();
    let q = queue_name("prefetch-warn");
    let mut con = raw(&url).await;
    // Read by the worker as any worker reads its config/toolq.toml.
    let dir = worker_dir(&q).join("config");
    std::fs::create_dir_all(&dir).expect("config dir");
    let python = fixtures_dir().join("venv/bin/python");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_server.py");
    let toml = format!(
        "[mcp.servers.fx]\ncommand = [{:?}, {:?}]\nredeliver = false\n",
        python.display().to_string(),
        script.display().to_string()
    );
    std::fs::write(dir.join("toolq.toml"), toml).expect("config file");
    let warning = "these tools' jobs are then buried as `interrupted` instead of run again";
    for prefetch in ["0", "2"] {
        let mut w = spawn_worker_process(&url, &q, 2, &[("TOOLQ_PREFETCH", prefetch)]);
        // Registered only after the start-up checks have logged.
        worker_id_of(&mut con, &q, w.pid(), WAIT).await;
        let lines: Vec<String> = w
            .log_text()
            .lines()
            .filter(|l| l.contains(warning))
            .map(str::to_owned)
            .collect();
        match prefetch {
            "0" => assert!(lines.is_empty(), "no prefetch, no warning: {lines:?}"),
            _ => {
                assert_eq!(lines.len(), 1, "one warning: {}", w.log_text());
                assert!(lines[0].contains("fx.add"), "names the tool: {}", lines[0]);
            }
        }
        w.signal(libc::SIGTERM);
        assert!(w.wait_exit(WAIT).is_some(), "the worker stops");
    }
}
