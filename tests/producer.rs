//! The Rust producer API against a real redis-server and an in-process
//! worker: batches stream their results back, unique jobs skip duplicates
//! for exactly as long as their twin is pending, delayed or running, and a
//! pending cap holds while the producer waits.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::json;
use toolq::job::Job;
use toolq::producer::{BatchOptions, Producer, ProducerError};
use toolq::queue::QueueKeys;

const WAIT: Duration = Duration::from_secs(30);

fn producer(url: &str) -> Producer {
    Producer::connect(url, None).unwrap()
}

fn awaitable() -> BatchOptions {
    BatchOptions {
        awaitable: true,
        ..BatchOptions::default()
    }
}

fn unique(tool: &str, args: serde_json::Value, key: &str) -> Job {
    let mut job = Job::new(tool, args);
    job.unique_key = Some(key.into());
    job
}

async fn keys_matching(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_streams_back_every_result_once_in_completion_order() {
    let server = redis();
    let q = queue_name("stream");
    let mut con = raw(&server.url()).await;
    let worker = start_worker(config(&server.url(), &q, 8));
    // The first job is slow, so completion order differs from input order.
    let mut jobs = vec![Job::new("sleep", json!({"ms": 600}))];
    for i in 1..500 {
        let mut job = Job::new("calculator", json!({"expression": format!("{i} * 2")}));
        job.meta = Some(json!({"i": i}));
        jobs.push(job);
    }
    let p = producer(&server.url());
    let submitted = p.enqueue_batch(&q, &jobs, &awaitable()).await.unwrap();
    assert_eq!(submitted.ids.len(), 500);
    assert_eq!(submitted.enqueued(), 500);
    let finished: Vec<_> = p
        .await_batch(&submitted, Some(WAIT))
        .unwrap()
        .into_stream()
        .map(|r| r.expect("no error while waiting"))
        .collect()
        .await;
    assert_eq!(finished.len(), 500);
    let indexes: HashSet<usize> = finished.iter().map(|f| f.index).collect();
    assert_eq!(indexes.len(), 500, "each job reported exactly once");
    for f in &finished {
        assert_eq!(f.id, submitted.ids[f.index]);
        let r = f.result.as_ref().expect("a stored result");
        assert_eq!(r.status, "succeeded");
        if f.index > 0 {
            assert_eq!(r.output.as_ref().unwrap()["result"], json!(f.index * 2));
        }
    }
    let slow_at = finished.iter().position(|f| f.index == 0).unwrap();
    assert!(slow_at > 0, "results come in completion order");
    // The notification list is gone once everything was reported.
    assert!(keys_matching(&mut con, &QueueKeys::new(&q).batch("*"))
        .await
        .is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_without_a_worker_times_out_with_the_unfinished_count() {
    let server = redis();
    let q = queue_name("timeout");
    let p = producer(&server.url());
    let jobs = vec![Job::new("echo", json!({})); 3];
    let submitted = p.enqueue_batch(&q, &jobs, &awaitable()).await.unwrap();
    let mut waiter = p
        .await_batch(&submitted, Some(Duration::from_millis(300)))
        .unwrap();
    match waiter.next().await {
        Some(Err(ProducerError::BatchTimeout { unfinished, .. })) => assert_eq!(unfinished, 3),
        other => panic!("expected a batch timeout, got {other:?}"),
    }
    assert!(waiter.next().await.is_none());
    assert_eq!(waiter.unfinished_ids(), submitted.ids);
    // A batch enqueued without `awaitable` cannot be awaited.
    let plain = p
        .enqueue_batch(&q, &jobs, &BatchOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        p.await_batch(&plain, None),
        Err(ProducerError::NotAwaitable)
    ));
    let r = p
        .enqueue_and_wait(
            &q,
            Job::new("echo", json!({})),
            &BatchOptions::default(),
            Duration::from_millis(200),
        )
        .await;
    assert!(matches!(r, Err(ProducerError::Timeout { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_wait_returns_the_final_result() {
    let server = redis();
    let q = queue_name("one");
    let worker = start_worker(config(&server.url(), &q, 2));
    let p = producer(&server.url());
    let mut job = Job::new("fail", json!({"times": 2}));
    job.max_attempts = Some(5);
    let r = p
        .enqueue_and_wait(&q, job, &BatchOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, "succeeded", "retries are not final: {r:?}");
    assert_eq!(r.attempts, 3);
    worker.stop().await;
}

/// Each wait blocks on a connection of its own; one finished wait leaves
/// it to the next, so a service calling `enqueue_and_wait` over and over
/// does not open a connection per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_and_wait_keeps_its_blocking_connection_for_the_next_call() {
    let server = redis();
    let q = queue_name("reuse");
    let worker = start_worker(config(&server.url(), &q, 2));
    let p = producer(&server.url());
    let mut con = raw(&server.url()).await;
    // The producer's own connection, opened by a first call.
    p.enqueue_and_wait(
        &q,
        Job::new("echo", json!({})),
        &BatchOptions::default(),
        WAIT,
    )
    .await
    .unwrap();
    let before = connections_received(&mut con).await;
    for n in 0..20 {
        let r = p
            .enqueue_and_wait(
                &q,
                Job::new("echo", json!({"n": n})),
                &BatchOptions::default(),
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(r.status, "succeeded");
    }
    let opened = connections_received(&mut con).await - before;
    println!("20 enqueue_and_wait calls opened {opened} connections");
    // The worker may open one of its own meanwhile; a connection per call
    // would be 20.
    assert!(
        opened <= 3,
        "{opened} connections for 20 calls: one per call"
    );
    // A kept connection Redis closed meanwhile is replaced, not an error:
    // close it (the one whose last command was the wait's LPOP or BLPOP).
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut con)
        .await
        .unwrap();
    let waiting: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains(" cmd=blpop ") || l.contains(" cmd=lpop "))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(waiting.len(), 1, "one kept waiting connection: {clients}");
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "ID", waiting[0]])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    let r = p
        .enqueue_and_wait(
            &q,
            Job::new("echo", json!({})),
            &BatchOptions::default(),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(r.status, "succeeded");
    worker.stop().await;
}

async fn connections_received(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_job_is_skipped_while_its_twin_is_pending_delayed_or_running() {
    let server = redis();
    let q = queue_name("unique");
    let mut con = raw(&server.url()).await;
    let keys = QueueKeys::new(&q);
    let p = producer(&server.url());

    // Pending.
    p.enqueue(&q, unique("echo", json!({"n": 1}), "k"))
        .await
        .unwrap();
    let dup = p.enqueue(&q, unique("echo", json!({"n": 2}), "k")).await;
    assert!(matches!(dup, Err(ProducerError::Duplicate { ref unique_key }) if unique_key == "k"));
    let batch = [
        unique("echo", json!({}), "k"),
        unique("echo", json!({}), "k2"),
        unique("echo", json!({}), "k2"),
        Job::new("echo", json!({})),
    ];
    let s = p
        .enqueue_batch(&q, &batch, &BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(s.duplicates, vec![0, 2]);
    assert_eq!(llen(&mut con, &keys.pending).await, 3);

    // Delayed (scheduled far ahead).
    let mut later = unique("echo", json!({}), "d");
    later.run_at = Some(toolq::job::now_ms() + 3_600_000);
    p.enqueue(&q, later.clone()).await.unwrap();
    assert!(p.enqueue(&q, later).await.is_err());
    assert_eq!(zcard(&mut con, &keys.delayed).await, 1);

    // Running, then released when it succeeds.
    let worker = start_worker(config(&server.url(), &q, 4));
    let p2 = p.clone();
    let q2 = q.clone();
    let running = tokio::spawn(async move {
        p2.enqueue_and_wait(
            &q2,
            unique("sleep", json!({"ms": 800}), "r"),
            &BatchOptions::default(),
            WAIT,
        )
        .await
    });
    let b = common::broker(&server.url());
    eventually(WAIT, "the sleep job to run", || {
        let b = &b;
        let keys = &keys;
        async move { b.depths(keys).await.unwrap().active == 1 }
    })
    .await;
    assert!(matches!(
        p.enqueue(&q, unique("sleep", json!({"ms": 1}), "r")).await,
        Err(ProducerError::Duplicate { .. })
    ));
    assert_eq!(running.await.unwrap().unwrap().status, "succeeded");
    p.enqueue(&q, unique("echo", json!({}), "r"))
        .await
        .expect("the key is free once its job succeeded");

    // Dead releases the key too.
    let dead = p
        .enqueue_and_wait(
            &q,
            unique("fail", json!({"permanent": true}), "x"),
            &BatchOptions::default(),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(dead.status, "dead");
    p.enqueue(&q, unique("echo", json!({}), "x"))
        .await
        .expect("the key is free once its job died");
    eventually(WAIT, "pending to drain", || {
        let b = &b;
        let keys = &keys;
        async move { b.depths(keys).await.unwrap().pending == 0 }
    })
    .await;
    worker.stop().await;
    // Only the scheduled job's key is still held.
    eventually(WAIT, "finished jobs to release their keys", || {
        let mut con = con.clone();
        let pattern = keys.unique("*");
        let held = keys.unique("d");
        async move { keys_matching(&mut con, &pattern).await == vec![held] }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_holds_pending_at_or_under_the_cap() {
    let server = redis();
    let q = queue_name("cap");
    let keys = QueueKeys::new(&q);
    let cap = 50;
    let p = producer(&server.url());
    let jobs = vec![Job::new("sleep", json!({"ms": 1})); 1000];
    let options = BatchOptions {
        awaitable: true,
        max_pending: Some(cap),
        ..BatchOptions::default()
    };
    let progress = Arc::new(AtomicU64::new(0));
    let submit = {
        let (p, q, progress) = (p.clone(), q.clone(), progress.clone());
        tokio::spawn(async move {
            let valid = jobs
                .iter()
                .map(|j| toolq::producer::ValidJob::from_job(j).unwrap())
                .collect();
            p.submit(&q, valid, &options, &mut |n| {
                progress.store(n as u64, Ordering::Relaxed)
            })
            .await
        })
    };
    // Sample the queue's length from another connection the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (mut con, stop, pending) =
            (raw(&server.url()).await, stop.clone(), keys.pending.clone());
        tokio::spawn(async move {
            let (mut max, mut samples) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                max = max.max(llen(&mut con, &pending).await);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (max, samples)
        })
    };
    // No worker yet: the producer fills the queue to the cap and waits.
    let mut con = raw(&server.url()).await;
    eventually(WAIT, "pending to reach the cap", || {
        let mut con = con.clone();
        let pending = keys.pending.clone();
        async move { llen(&mut con, &pending).await == cap }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!submit.is_finished(), "the producer waits at the cap");
    assert_eq!(progress.load(Ordering::Relaxed), cap);
    assert_eq!(llen(&mut con, &keys.pending).await, cap);

    let worker = start_worker(config(&server.url(), &q, 4));
    let submitted = submit.await.unwrap().unwrap();
    assert_eq!(submitted.enqueued(), 1000);
    let mut waiter = p.await_batch(&submitted, Some(WAIT)).unwrap();
    let mut done = 0;
    while let Some(f) = waiter.next().await {
        assert!(f.unwrap().succeeded());
        done += 1;
    }
    assert_eq!(done, 1000);
    stop.store(true, Ordering::Relaxed);
    let (max, samples) = sampler.await.unwrap();
    assert!(samples > 10, "the sampler ran ({samples} samples)");
    assert!(max <= cap, "pending reached {max}, over the cap of {cap}");
    worker.stop().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_typed_unavailable_error() {
    let server = redis();
    let url = server.url();
    drop(server);
    let p = producer(&url);
    match p.enqueue("q", Job::new("echo", json!({}))).await {
        Err(ProducerError::Queue(e)) => assert!(e.is_unavailable(), "{e}"),
        other => panic!("expected a queue error, got {other:?}"),
    }
}

/// The scripts that schedule a job ask whether it is the delayed set's
/// earliest (`ZCOUNT`) after writing it; a Redis user that may not run
/// `ZCOUNT` (an ACL from before the wake-ups) must not fail the script
/// half-way: its jobs go in, are retried and run, and the wake-up is sent
/// anyway. Here no one may: the server renames the command away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_works_where_zcount_is_refused() {
    let server = toolq::redis_server::RedisServer::start_with(&["--rename-command", "ZCOUNT", ""])
        .expect("a server without ZCOUNT");
    let mut con = raw(&server.url()).await;
    let refused: redis::RedisResult<u64> = redis::cmd("ZCOUNT")
        .arg(&["k", "-inf", "+inf"])
        .query_async(&mut con)
        .await;
    assert!(refused.is_err(), "ZCOUNT is gone");
    let q = queue_name("nozcount");
    let worker = start_worker(config(&server.url(), &q, 2));
    let p = producer(&server.url());
    // Enqueued scheduled, then retried (a delayed-set write by the worker).
    let mut job = Job::new("fail", json!({"times": 1}));
    job.max_attempts = Some(3);
    job.run_at = Some(toolq::job::now_ms() + 300);
    let r = p
        .enqueue_and_wait(&q, job, &BatchOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(r.status, "succeeded", "{r:?}");
    assert_eq!(r.attempts, 2, "the retry ran: {r:?}");
    worker.stop().await;
}
