//! Follow-up jobs with real `toolq worker` processes and a real
//! `redis-server`: which outcomes enqueue which follow-up, what the
//! follow-up sees of its parent, and (under repeated kill -9) that every
//! follow-up is enqueued exactly once. The kill test sends follow-ups to a
//! queue no worker serves, so each one enqueued can be counted where it lies.
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use common::fault_process::*;
use common::*;
use serde_json::{json, Value};
use toolq::job::{FollowUp, Job};
use toolq::producer::{BatchOptions, Producer, ValidJob};

const WAIT: Duration = Duration::from_secs(30);
/// Killed workers' jobs are recovered within about a second.
const FAST_BEAT: [(&str, &str); 2] = [
    ("TOOLQ_HEARTBEAT_INTERVAL_MS", "200"),
    ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "1000"),
];

fn job(id: &str, tool: &str, args: Value) -> Job {
    let mut job = Job::new(tool, args);
    job.id = Some(id.into());
    job
}

/// Success enqueues `on_success` with the parent's id and output in its
/// args (and the chain goes on); death enqueues `on_failure` with the
/// error; a retry is not a failure; a job whose template is bad is buried
/// unrun as `invalid_follow_up`; an operator's cancel fires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_run_on_the_outcome_that_triggers_them_with_the_parents_values() {
    let server = redis();
    let url = server.url();
    let q = queue_name("fu");
    let mut con = raw(&url).await;
    let producer = Producer::connect(&url, None).unwrap();
    let env = [
        ("TOOLQ_BACKOFF_BASE_MS", "20"),
        ("TOOLQ_BACKOFF_MAX_MS", "50"),
    ];
    let _worker = spawn_worker_process(&url, &q, 4, &env);

    let report = FollowUp::new("echo", json!({"of": "$prev.id", "error": "$prev.error"}));
    let chain = FollowUp::new(
        "echo",
        json!({"got": "$prev.output", "v": "$prev.output.v", "of": "$prev.id"}),
    )
    .on_success(FollowUp::new("echo", json!({"then": "$prev.output.of"})));
    let jobs = [
        job("ok", "echo", json!({"v": 7}))
            .on_success(chain)
            .on_failure(report.clone()),
        job("dies", "fail", json!({"permanent": true}))
            .on_success(FollowUp::new("echo", json!({})))
            .on_failure(FollowUp::new("echo", json!({"kind": "$prev.error.kind"}))),
        // Fails once, then succeeds: the retry fires nothing.
        job("flaky", "fail", json!({"times": 1}))
            .on_success(FollowUp::new("echo", json!({"x": 1})))
            .on_failure(report.clone()),
        job("nobody", "no_such_tool", json!({})).on_failure(report.clone()),
    ];
    producer
        .enqueue_batch(&q, &jobs, &BatchOptions::default())
        .await
        .unwrap();
    // Past the producer's checks (any client can LPUSH): buried unrun.
    lpush(
        &mut con,
        &q,
        &[
            json!({"tool": "count", "id": "bad", "args": {"key": format!("fu:{q}:bad"), "ms": 0},
                 "on_success": {"tool": "echo", "args": {}, "unique_key": "u"}})
            .to_string(),
        ],
    )
    .await;

    let r = wait_result(&mut con, &q, "ok:on_success", WAIT).await;
    assert_eq!(r["status"], "succeeded");
    assert_eq!(
        r["output"],
        json!({"got": {"v": 7}, "v": 7, "of": "ok"}),
        "the parent's output and id"
    );
    let r = wait_result(&mut con, &q, "ok:on_success:on_success", WAIT).await;
    assert_eq!(r["output"], json!({"then": "ok"}), "the chain goes on");

    let r = wait_result(&mut con, &q, "dies:on_failure", WAIT).await;
    assert_eq!(r["output"], json!({"kind": "permanent"}));

    let r = wait_result(&mut con, &q, "flaky:on_success", WAIT).await;
    assert_eq!(r["output"], json!({"x": 1}));
    assert_eq!(
        wait_result(&mut con, &q, "flaky", WAIT).await["attempts"],
        2
    );

    let r = wait_result(&mut con, &q, "nobody:on_failure", WAIT).await;
    assert_eq!(r["output"]["of"], "nobody");
    assert_eq!(r["output"]["error"]["kind"], "unknown_tool");

    let bad = wait_result(&mut con, &q, "bad", WAIT).await;
    assert_eq!(bad["status"], "dead");
    assert_eq!(bad["error"]["kind"], "invalid_follow_up");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `unique_key`"),
        "{bad}"
    );
    assert!(!exists(&mut con, &format!("fu:{q}:bad")).await, "not run");

    // Cancelled while running: settled as cancelled, no follow-up.
    let long = job("long", "sleep", json!({"ms": 60_000})).on_failure(report.clone());
    producer
        .enqueue_batch(&q, &[long], &BatchOptions::default())
        .await
        .unwrap();
    let (_, view) = producer
        .cancel_and_wait(&q, "long", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(view.result.unwrap()["status"], "cancelled");

    // Every follow-up that should run has run: those that should not never
    // will (their ids would only come from the settlements checked above).
    for id in [
        "ok:on_failure",
        "dies:on_success",
        "flaky:on_failure",
        "bad:on_success",
        "long:on_failure",
    ] {
        assert_eq!(
            result_of(&mut con, &q, id).await,
            None,
            "{id} must not exist"
        );
    }
    assert!(
        pending_jobs(&mut con, &q).await.is_empty(),
        "nothing else enqueued"
    );
}

fn count_key(q: &str, id: &str) -> String {
    format!("fu:{q}:count:{id}")
}

/// Parents that run `count` for 200–800 ms (so every kill finds jobs
/// running, and some finished but not yet acked), each with an
/// `on_success` (and an `on_failure` that must never fire) for `next`.
fn parents(q: &str, next: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("p{i}");
            let ms = 200 + (i as u64 * 37) % 600;
            json!({
                "tool": "count", "id": id,
                "args": {"key": count_key(q, &id), "ms": ms},
                "on_success": {"tool": "count", "queue": next,
                    "args": {"key": count_key(next, &id), "ms": 0, "prev": "$prev.output"}},
                "on_failure": {"tool": "echo", "queue": next, "args": {}}
            })
            .to_string()
        })
        .collect()
}

/// A follow-up (or a follow-up's follow-up, or a batch callback) sent to a
/// queue nobody registered puts that queue in the registry when its parent
/// is enqueued, by either producer path, so `toolq stats`, the console and
/// the gateway list it; once a follow-up lands there, its stats count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_ups_queue_is_registered_when_its_parent_is_enqueued() {
    let server = redis();
    let url = server.url();
    let q = queue_name("fureg");
    let [next, deep, line, cb] = ["next", "deep", "line", "cb"].map(|s| format!("{q}-{s}"));
    let producer = Producer::connect(&url, None).unwrap();

    let parent = job("p", "echo", json!({"v": 1})).on_success(
        FollowUp::new("echo", json!({"got": "$prev.output"}))
            .queue(&next)
            .on_failure(FollowUp::new("echo", json!({})).queue(&deep)),
    );
    producer
        .enqueue_batch(&q, &[parent], &BatchOptions::default())
        .await
        .unwrap();
    let mut registered = producer.queues().await.unwrap();
    registered.sort();
    let mut want = vec![q.clone(), next.clone(), deep.clone()];
    want.sort();
    assert_eq!(registered, want, "the parent's queue and its chain's");

    // The path of `toolq submit` (JSON lines), with a batch callback.
    let text = json!({"tool": "echo", "args": {},
                      "on_failure": {"tool": "echo", "args": {}, "queue": line}})
    .to_string();
    let lines = vec![ValidJob::parse(text.as_bytes(), Default::default()).unwrap()];
    let options = BatchOptions {
        callback: Some(FollowUp::new("echo", json!({})).queue(&cb)),
        ..BatchOptions::default()
    };
    producer
        .submit(&q, lines, &options, &mut |_| {})
        .await
        .unwrap();
    let registered = producer.queues().await.unwrap();
    for name in [&line, &cb] {
        assert!(registered.contains(name), "{name} in {registered:?}");
    }

    // No worker serves `next`: the follow-up waits there, and is counted.
    let worker = start_worker(config(&url, &q, 2));
    let mut con = raw(&url).await;
    wait_result(&mut con, &q, "p", WAIT).await;
    let stats = producer.stats(Duration::from_secs(10)).await.unwrap();
    let at_next = stats
        .iter()
        .find(|s| s.queue == next)
        .expect("stats list it");
    assert_eq!(
        at_next.pending, 1,
        "the follow-up, pending where it was sent"
    );
    worker.stop().await;
}

/// N parents each with an `on_success`, drained by three workers while one
/// of them is SIGKILLed every 2 s (bursts of parents land just before each
/// kill, so every kill hits busy workers): exactly N follow-ups are
/// enqueued, one per parent (0 lost, 0 duplicated), each carrying the
/// output of the run that settled its parent, and no `on_failure` fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_drain_neither_loses_nor_duplicates_a_follow_up() {
    let n = scaled(3000);
    let server = redis();
    let url = server.url();
    let q = queue_name("fukill");
    let next = format!("{q}-next");
    let mut con = raw(&url).await;
    let payloads = parents(&q, &next, n);
    let (backlog, stream) = payloads.split_at(n / 4);
    lpush(&mut con, &q, backlog).await;
    let mut bursts = stream.chunks((n * 3 / 40).max(1));

    let start = Instant::now();
    let mut workers: VecDeque<WorkerProcess> = (0..3)
        .map(|_| spawn_worker_process(&url, &q, 50, &FAST_BEAT))
        .collect();
    let (mut kills, mut held_at_kills) = (0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(1850)).await;
        let Some(burst) = bursts.next() else { break };
        lpush(&mut con, &q, burst).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut victim = workers.pop_front().unwrap();
        let id = worker_id_of(&mut con, &q, victim.pid(), Duration::from_secs(10)).await;
        victim.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(100)).await;
        held_at_kills += held_jobs(&mut con, &q, &id).await.len();
        victim.signal(libc::SIGKILL);
        victim.wait_exit(Duration::from_secs(10)).expect("killed");
        kills += 1;
        workers.push_back(spawn_worker_process(&url, &q, 50, &FAST_BEAT));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat(&mut con, &q, "succeeded").await < n as u64 {
        assert!(
            Instant::now() < deadline,
            "parents not all settled: {} of {n}",
            stat(&mut con, &q, "succeeded").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed();

    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in pending_jobs(&mut con, &next).await {
        by_id
            .entry(f["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(f);
    }
    let enqueued: usize = by_id.values().map(Vec::len).sum();
    let lost: Vec<String> = (0..n)
        .map(|i| format!("p{i}:on_success"))
        .filter(|id| !by_id.contains_key(id))
        .collect();
    let duplicated: usize = by_id.values().map(|v| v.len() - 1).sum();
    let failures = by_id
        .keys()
        .filter(|id| id.ends_with(":on_failure"))
        .count();
    let reruns: usize = {
        let names: Vec<String> = (0..n).map(|i| count_key(&q, &format!("p{i}"))).collect();
        let mut total = 0;
        for chunk in names.chunks(1000) {
            let c: Vec<Option<u64>> = redis::cmd("MGET")
                .arg(chunk)
                .query_async(&mut con)
                .await
                .unwrap();
            total += c
                .iter()
                .map(|c| c.unwrap_or(0).saturating_sub(1))
                .sum::<u64>();
        }
        total as usize
    };
    println!(
        "follow-ups under kill -9: parents={n} follow_ups_expected={n} enqueued={enqueued} \
         lost={} duplicated={duplicated} on_failure_fired={failures} kills={kills} \
         held_at_kills={held_at_kills} parents_rerun={reruns} run={:.1}s",
        lost.len(),
        elapsed.as_secs_f64()
    );
    assert!(kills >= 5, "the drain outlasted the kills ({kills})");
    assert!(held_at_kills > 0, "the kills hit workers holding parents");
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(20)]);
    assert_eq!(duplicated, 0);
    assert_eq!(failures, 0);
    assert_eq!(enqueued, n);
    for (id, f) in &by_id {
        let executions = &f[0]["args"]["prev"]["executions"];
        assert!(
            executions.as_u64().is_some_and(|e| e >= 1),
            "{id}: the settling run's output, got {}",
            f[0]
        );
    }
    for w in workers {
        w.signal(libc::SIGKILL);
    }
}

/// Batches of 100 jobs (90 `count` jobs of 200–800 ms, 10 that die), each
/// submitted with a callback, while three workers drain them and one is
/// SIGKILLed every 2 s (batches submitted just before each kill, so seals
/// race settlements and kills hit workers holding batch jobs): each
/// batch's callback is enqueued exactly once, with 90 succeeded and 10 dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_drain_neither_loses_nor_duplicates_a_batch_callback() {
    let batches = scaled(30).max(10);
    let per_batch = 100;
    let server = redis();
    let url = server.url();
    let q = queue_name("cbkill");
    let next = format!("{q}-next");
    let mut con = raw(&url).await;
    let producer = Producer::connect(&url, None).unwrap();
    let options = BatchOptions {
        callback: Some(
            FollowUp::new(
                "echo",
                json!({"ok": "$batch.succeeded", "dead": "$batch.dead",
                       "total": "$batch.total", "batch": "$batch.id"}),
            )
            .queue(next.clone()),
        ),
        ..BatchOptions::default()
    };
    let batch_jobs = |b: usize| -> Vec<Job> {
        (0..per_batch)
            .map(|i| {
                let id = format!("b{b}j{i}");
                match i % 10 {
                    9 => job(&id, "fail", json!({"permanent": true})),
                    _ => {
                        let ms = 200 + ((b * per_batch + i) as u64 * 37) % 600;
                        job(&id, "count", json!({"key": count_key(&q, &id), "ms": ms}))
                    }
                }
            })
            .collect()
    };
    let mut submitted = BTreeMap::new();
    let submit = |b: usize| {
        let (producer, q, options, jobs) = (&producer, &q, &options, batch_jobs(b));
        async move {
            let s = producer.enqueue_batch(q, &jobs, options).await.unwrap();
            (s.batch.unwrap(), s.callback.unwrap())
        }
    };
    for b in 0..batches / 4 {
        let (batch, cb) = submit(b).await;
        submitted.insert(batch, cb);
    }

    let start = Instant::now();
    let mut workers: VecDeque<WorkerProcess> = (0..3)
        .map(|_| spawn_worker_process(&url, &q, 50, &FAST_BEAT))
        .collect();
    let (mut kills, mut held_at_kills) = (0, 0);
    let mut b = batches / 4;
    let per_burst = (batches - b).div_ceil(10);
    while b < batches {
        tokio::time::sleep(Duration::from_millis(1850)).await;
        for _ in 0..per_burst.min(batches - b) {
            let (batch, cb) = submit(b).await;
            submitted.insert(batch, cb);
            b += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut victim = workers.pop_front().unwrap();
        let id = worker_id_of(&mut con, &q, victim.pid(), Duration::from_secs(10)).await;
        victim.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(100)).await;
        held_at_kills += held_jobs(&mut con, &q, &id).await.len();
        victim.signal(libc::SIGKILL);
        victim.wait_exit(Duration::from_secs(10)).expect("killed");
        kills += 1;
        workers.push_back(spawn_worker_process(&url, &q, 50, &FAST_BEAT));
    }
    let jobs = (batches * per_batch) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let settled = stat(&mut con, &q, "succeeded").await + stat(&mut con, &q, "dead").await;
        if settled >= jobs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs not all settled: {settled} of {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = start.elapsed();

    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in pending_jobs(&mut con, &next).await {
        by_id
            .entry(f["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(f);
    }
    let enqueued: usize = by_id.values().map(Vec::len).sum();
    let lost: Vec<&String> = submitted
        .values()
        .filter(|cb| !by_id.contains_key(*cb))
        .collect();
    let duplicated: usize = by_id.values().map(|v| v.len() - 1).sum();
    println!(
        "batch callbacks under kill -9: batches={batches} jobs={jobs} callbacks_expected={batches} \
         enqueued={enqueued} lost={} duplicated={duplicated} kills={kills} \
         held_at_kills={held_at_kills} run={:.1}s",
        lost.len(),
        elapsed.as_secs_f64()
    );
    assert!(kills >= 5, "the drain outlasted the kills ({kills})");
    assert!(
        held_at_kills > 0,
        "the kills hit workers holding batch jobs"
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(duplicated, 0);
    assert_eq!(enqueued, batches);
    for (batch, cb) in &submitted {
        let args = &by_id[cb][0]["args"];
        assert_eq!(
            args,
            &json!({"ok": 90, "dead": 10, "total": 100, "batch": batch}),
            "{cb}"
        );
    }
    for w in workers {
        w.signal(libc::SIGKILL);
    }
}
