//! Sharded queues on one redis-server, with real `toolq worker` processes:
//! a sharded queue drains with nothing lost and every shard worked; a
//! `unique_key` holds across shards; raising the shard count while jobs
//! flow and lowering it by the documented procedure lose nothing; a
//! SIGKILLed worker during a sharded drain loses nothing; `toolq stats`
//! adds the shards up and `--shards` lists them. Each test prints its
//! per-shard figures (run with `--nocapture`).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::fault_process::spawn_worker_on;
use common::sharded::{sharded, spawn_workers, Sharded};
use common::*;
use serde_json::{json, Value};
use toolq::job::{FollowUp, Job};
use toolq::producer::{BatchOptions, Producer, ProducerError};
use toolq::queue::{keys, QueueKeys};

type Con = redis::aio::MultiplexedConnection;

fn producer(url: &str) -> Producer {
    Producer::connect(url, None).unwrap()
}

fn jobs(n: usize, tool: &str, args: Value) -> Vec<Job> {
    (0..n).map(|_| Job::new(tool, args.clone())).collect()
}

/// Enqueues `jobs` and waits for every one of them to finish; returns how
/// many succeeded. The waiter reads each shard's notification list.
async fn run_all(p: &Producer, q: &str, jobs: &[Job], within: Duration) -> usize {
    let opts = BatchOptions {
        awaitable: true,
        ..BatchOptions::default()
    };
    let submitted = p.enqueue_batch(q, jobs, &opts).await.unwrap();
    let mut waiter = p.await_batch(&submitted, Some(within)).unwrap();
    let mut ok = 0;
    while let Some(f) = waiter.next().await {
        let f = f.unwrap_or_else(|e| panic!("{e}"));
        ok += usize::from(f.succeeded());
    }
    ok
}

/// Succeeded jobs per shard (0..n), from each shard's totals.
async fn per_shard(con: &mut Con, q: &str, n: u32) -> Vec<u64> {
    let mut out = Vec::new();
    for k in 0..n {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(QueueKeys::shard(q, k).stats)
            .arg("succeeded")
            .query_async(con)
            .await
            .unwrap();
        out.push(v.unwrap_or(0));
    }
    out
}

/// Waits until `n` workers are registered on shard `k` of `q`.
async fn registered_on(con: &mut Con, q: &str, k: u32, n: u64, within: Duration) {
    let start = Instant::now();
    let key = QueueKeys::shard(q, k).workers;
    while zcard(con, &key).await != n {
        assert!(
            start.elapsed() < within,
            "{n} workers not on shard {k} of {q}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn toolq(url: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_toolq"))
        .args(args)
        .env("TOOLQ_REDIS_URL", url)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// 8,000 jobs over 4 shards and 2 workers: all succeed, each shard ran
/// its chunks, `toolq stats` adds the shards up and `--shards` lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_queue_drains_over_every_shard_with_nothing_lost() {
    const N: usize = 8_000;
    let server = redis();
    let url = server.url();
    let q = queue_name("sharded");
    let mut con = raw(&url).await;
    let (code, text) = toolq(&url, &["queue", "shards", &q, "4"]);
    assert_eq!(code, 0, "{text}");
    let (_, text) = toolq(&url, &["queue", "shards", &q]);
    assert!(text.contains("4 shard(s)"), "{text}");
    let workers = spawn_workers(&url, &q, 2, 16);
    for k in 0..4 {
        registered_on(&mut con, &q, k, 2, Duration::from_secs(20)).await;
    }
    let p = producer(&url);
    let start = Instant::now();
    let ok = run_all(
        &p,
        &q,
        &jobs(N, "echo", json!({"n": 1})),
        Duration::from_secs(120),
    )
    .await;
    let took = start.elapsed();
    let counts = per_shard(&mut con, &q, 4).await;
    println!(
        "sharded drain: {N} jobs, 4 shards, 2 workers: {ok} succeeded in {:.2} s; per shard {counts:?}",
        took.as_secs_f64()
    );
    assert_eq!(ok, N, "every job finished and succeeded");
    assert_eq!(counts.iter().sum::<u64>(), N as u64);
    assert!(
        counts.iter().all(|&c| c > 0),
        "every shard got work: {counts:?}"
    );

    let (code, text) = toolq(&url, &["stats", "--json", "--shards"]);
    assert_eq!(code, 0, "{text}");
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text}"));
    let s = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["queue"] == q.as_str())
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(s["totals"]["succeeded"], N as u64, "{s}");
    assert_eq!(s["shard_count"], 4, "{s}");
    let listed: Vec<u64> = s["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["totals"]["succeeded"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, counts, "--shards lists each shard's own numbers");
    let (_, table) = toolq(&url, &["stats", "--shards"]);
    println!("{table}");
    assert!(table.contains("  #3"), "{table}");
    let (_, plain) = toolq(&url, &["stats", "--json"]);
    assert!(
        !plain.contains("\"shards\":["),
        "no per-shard rows without --shards"
    );
    drop(workers);
}

/// A unique key maps to one shard whatever the batch, so a second job with
/// the key is a duplicate even from another producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_holds_across_shards() {
    let Sharded {
        server: _server,
        url,
        queue: q,
        mut con,
        producer: first,
    } = sharded("unique-sharded", 4).await;
    let unique = |i: usize| {
        let mut j = Job::new("echo", json!({"i": i}));
        j.unique_key = Some(format!("order-{i}"));
        j
    };
    let batch: Vec<Job> = (0..40).map(unique).collect();
    let s = first
        .enqueue_batch(&q, &batch, &BatchOptions::default())
        .await
        .unwrap();
    assert!(s.duplicates.is_empty());
    let mut on = [0u64; 4];
    for (i, &k) in s.shards.iter().enumerate() {
        assert_eq!(k, keys::unique_shard(&format!("order-{i}"), 4));
        on[k as usize] += 1;
    }
    for k in 0..4u32 {
        assert_eq!(
            llen(&mut con, &QueueKeys::shard(&q, k).pending).await,
            on[k as usize]
        );
    }
    println!("unique jobs per shard: {on:?}");
    // Another producer, batches starting elsewhere: every key is held.
    let second = producer(&url);
    for i in 0..40 {
        match second.enqueue(&q, unique(i)).await {
            Err(ProducerError::Duplicate { .. }) => {}
            other => panic!("order-{i}: {other:?}"),
        }
    }
    let again = second
        .enqueue_batch(&q, &batch, &BatchOptions::default())
        .await
        .unwrap();
    assert_eq!(again.duplicates.len(), 40);
}

/// Jobs flow while the count goes from 2 to 4: the new shards get work at
/// once (workers start on them within a heartbeat), nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_shard_count_while_jobs_flow_loses_nothing() {
    let Sharded {
        server: _server,
        url,
        queue: q,
        mut con,
        producer: p,
    } = sharded("raise", 2).await;
    let workers = spawn_workers(&url, &q, 2, 8);
    registered_on(&mut con, &q, 1, 2, Duration::from_secs(20)).await;
    let mut ids = Vec::new();
    let start = Instant::now();
    let mut raised = false;
    while start.elapsed() < Duration::from_secs(4) {
        if !raised && start.elapsed() > Duration::from_millis(1500) {
            let r = p.set_shards(&q, 4).await.unwrap();
            assert!(r.complete());
            raised = true;
        }
        let s = p
            .enqueue_batch(
                &q,
                &jobs(100, "sleep", json!({"ms": 1})),
                &BatchOptions::default(),
            )
            .await
            .unwrap();
        ids.extend(s.ids);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing = wait_for_results(&p, &q, &ids, Duration::from_secs(60)).await;
    let counts = per_shard(&mut con, &q, 4).await;
    println!(
        "raise 2 -> 4 live: {} jobs, {} without a result; per shard {counts:?}",
        ids.len(),
        missing
    );
    assert_eq!(missing, 0, "0 lost");
    assert!(
        counts[2] > 0 && counts[3] > 0,
        "new shards used: {counts:?}"
    );
    assert_eq!(
        counts.iter().sum::<u64>(),
        ids.len() as u64,
        "each job ran once"
    );
    drop(workers);
}

/// Lowering 4 -> 2 by the procedure while jobs flow: the first call retires
/// shards 2 and 3 (producers stop writing to them), workers drain them, a
/// later call completes the change; every job has its result and the
/// workers no longer serve the retired shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_shard_count_by_the_procedure_loses_nothing() {
    let Sharded {
        server: _server,
        url,
        queue: q,
        mut con,
        producer: p,
    } = sharded("lower", 4).await;
    // A backlog first, so the retired shards hold jobs when they retire:
    // 6,000 jobs of 5 ms on 2 workers of concurrency 4 take at least 3.75 s,
    // and the first call looks after 1.2 s.
    let mut ids = Vec::new();
    let s = p
        .enqueue_batch(
            &q,
            &jobs(6000, "sleep", json!({"ms": 5})),
            &BatchOptions::default(),
        )
        .await
        .unwrap();
    ids.extend(s.ids);
    let workers = spawn_workers(&url, &q, 2, 4);
    registered_on(&mut con, &q, 3, 2, Duration::from_secs(20)).await;
    let first = p.set_shards(&q, 2).await.unwrap();
    println!("lower 4 -> 2, first call: draining {:?}", first.draining);
    assert!(!first.complete(), "the retired shards still held jobs");
    assert_eq!(first.after.count, 2, "producers use 2 shards at once");
    let start = Instant::now();
    let mut calls = 1;
    let mut done = first.complete();
    while !done {
        let s = p
            .enqueue_batch(
                &q,
                &jobs(100, "sleep", json!({"ms": 1})),
                &BatchOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            s.shards.iter().all(|&k| k < 2),
            "no job goes to a retired shard"
        );
        ids.extend(s.ids);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = p.set_shards(&q, 2).await.unwrap();
        if calls % 10 == 0 {
            println!(
                "  call {calls} at {:.1} s: draining {:?}",
                start.elapsed().as_secs_f64(),
                r.draining
            );
        }
        done = r.complete();
        calls += 1;
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "retired shards drain"
        );
    }
    let missing = wait_for_results(&p, &q, &ids, Duration::from_secs(60)).await;
    let counts = per_shard(&mut con, &q, 4).await;
    println!(
        "lower 4 -> 2: {} jobs, {missing} without a result, complete after {calls} calls ({:.1} s); per shard {counts:?}",
        ids.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!(missing, 0, "0 lost");
    assert_eq!(
        counts.iter().sum::<u64>(),
        ids.len() as u64,
        "each job ran once"
    );
    let layout = p.broker().shard_layout(&q).await.unwrap();
    assert_eq!((layout.count, layout.serve, layout.max), (2, 2, 4));
    // The workers started again on shards 0 and 1 only.
    registered_on(&mut con, &q, 3, 0, Duration::from_secs(20)).await;
    registered_on(&mut con, &q, 0, 2, Duration::from_secs(20)).await;
    drop(workers);
}

/// kill -9 of one of three workers during a drain of a 4-shard queue: its
/// jobs, on whatever shards, are recovered; every job finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_during_a_sharded_drain_loses_nothing() {
    const N: usize = 4_000;
    let Sharded {
        server: _server,
        url,
        queue: q,
        mut con,
        producer: p,
    } = sharded("kill-sharded", 4).await;
    let mut workers = spawn_workers(&url, &q, 3, 8);
    for k in 0..4 {
        registered_on(&mut con, &q, k, 3, Duration::from_secs(20)).await;
    }
    let opts = BatchOptions {
        awaitable: true,
        ..BatchOptions::default()
    };
    let submitted = p
        .enqueue_batch(&q, &jobs(N, "sleep", json!({"ms": 5})), &opts)
        .await
        .unwrap();
    let mut waiter = p
        .await_batch(&submitted, Some(Duration::from_secs(120)))
        .unwrap();
    let mut finished = HashSet::new();
    let mut killed = false;
    while let Some(f) = waiter.next().await {
        let f = f.unwrap_or_else(|e| panic!("{e}"));
        assert!(f.succeeded(), "{:?}", f.raw);
        finished.insert(f.id);
        if !killed && finished.len() == N / 4 {
            workers[0].signal(libc::SIGKILL);
            killed = true;
        }
    }
    let counts = per_shard(&mut con, &q, 4).await;
    println!(
        "kill -9 during a 4-shard drain: {} of {N} finished; per shard {counts:?}",
        finished.len()
    );
    assert!(killed);
    assert_eq!(finished.len(), N, "0 lost");
    workers.remove(0);
}

/// On a sharded queue: a job is found by id whatever its shard (`toolq job
/// show`, `toolq result`, `enqueue_and_wait`), a follow-up and a batch
/// callback fire, and a periodic schedule ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_follow_ups_callbacks_and_schedules_work_on_a_sharded_queue() {
    let Sharded {
        server: _server,
        url,
        queue: q,
        mut con,
        producer: p,
    } = sharded("sharded-extras", 4).await;
    let ticks = format!("{q}-ticks");
    p.set_shards(&ticks, 3).await.unwrap();
    let _worker = spawn_worker_on(&url, &[&q, &ticks], 8, &[]);
    registered_on(&mut con, &q, 3, 1, Duration::from_secs(20)).await;

    // A job on a shard other than 0, found by id.
    let opts = BatchOptions {
        awaitable: true,
        ..BatchOptions::default()
    };
    let r = p
        .enqueue_and_wait(
            &q,
            Job::new("echo", json!({"v": 1})),
            &opts,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(r.status, "succeeded");
    // Single jobs go round the shards: one of the next few lands past 0.
    let mut far = None;
    for _ in 0..4 {
        let s = p
            .enqueue_batch(&q, &jobs(1, "echo", json!({})), &opts)
            .await
            .unwrap();
        if s.shards[0] > 0 {
            far = Some(s.ids[0].clone());
        }
        let mut w = p.await_batch(&s, Some(Duration::from_secs(20))).unwrap();
        assert!(w.next().await.unwrap().unwrap().succeeded());
    }
    let id = far.unwrap();
    let (code, text) = toolq(&url, &["job", "show", &id, "--queue", &q]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("succeeded"), "{text}");
    let (code, text) = toolq(&url, &["result", &id, "--queue", &q]);
    assert_eq!(code, 0, "{text}");

    // A follow-up and a batch callback.
    let mut parent = Job::new("echo", json!({"v": 2}));
    parent.id = Some("parent".into());
    let parent = parent.on_success(FollowUp::new("echo", json!({"of": "$prev.id"})));
    p.enqueue(&q, parent).await.unwrap();
    let cb = BatchOptions {
        callback: Some(FollowUp::new("echo", json!({"ok": "$batch.succeeded"}))),
        ..BatchOptions::default()
    };
    let s = p
        .enqueue_batch(&q, &jobs(30, "echo", json!({})), &cb)
        .await
        .unwrap();
    let callback = s.callback.unwrap();
    for id in ["parent:on_success", callback.as_str()] {
        let r = p.wait(&q, id, Duration::from_secs(20)).await.unwrap();
        assert_eq!(r.status, "succeeded", "{id}");
    }
    let r = p.result(&q, &callback).await.unwrap().unwrap();
    assert_eq!(r.output.unwrap()["ok"], 30);

    // A schedule ticking every second on a sharded queue.
    let (code, text) = toolq(
        &url,
        &[
            "schedule",
            "add",
            "tick",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            &ticks,
        ],
    );
    assert_eq!(code, 0, "{text}");
    let start = Instant::now();
    loop {
        let stats = p.queue_stats(&ticks, Duration::from_secs(5)).await.unwrap();
        if stats.totals.succeeded >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no ticks ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ids of `ids` with no final result after `within`.
async fn wait_for_results(p: &Producer, q: &str, ids: &[String], within: Duration) -> usize {
    let start = Instant::now();
    let mut left: Vec<&String> = ids.iter().collect();
    loop {
        let mut still = Vec::new();
        for id in left {
            let done = p.result(q, id).await.unwrap().is_some_and(|r| r.is_final());
            if !done {
                still.push(id);
            }
        }
        left = still;
        if left.is_empty() || start.elapsed() > within {
            return left.len();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
