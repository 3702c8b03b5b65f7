//! `prefetch`: a worker holds jobs beyond its concurrency, so the next batch
//! is fetched while this one runs. The cap on running jobs still holds, a
//! stop puts the prefetched jobs back without running them, and a killed
//! worker's prefetched jobs are recovered like its running ones.

mod common;

use std::time::Duration;

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::queue::QueueKeys;

type Con = redis::aio::MultiplexedConnection;

const WAIT: Duration = Duration::from_secs(30);

fn sleep_jobs(prefix: &str, n: usize, ms: u64) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let payloads = ids
        .iter()
        .map(|id| json!({"tool": "sleep", "id": id, "args": {"ms": ms}}).to_string())
        .collect();
    (ids, payloads)
}

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
    let (ids, payloads) = sleep_jobs("s", 6, 1000);
    lpush(&mut con, &q, &payloads).await;
    wait_held(&mut con, &q, &id, 6).await;

    // The grace (25 s) is long enough for all six to run one after the
    // other; only the two running ones may.
    w.signal(libc::SIGTERM);
    let status = w
        .wait_exit(Duration::from_secs(25))
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
