//! Redis Cluster: real `toolq worker` processes and a Rust producer reach a
//! cluster of three masters and three replicas through
//! `TOOLQ_REDIS_CLUSTER_NODES`, with queues spread over every master. One
//! cluster serves the scenarios in turn, each printing its figures
//! (`--nocapture`); only what the design guarantees is asserted.
//! `TOOLQ_TEST_CLUSTER_JOBS` sets the jobs per queue (default 200).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::cluster_clients::{producer, workers, CLUSTER_URL};
use common::fault_process::{spawn_worker_on, WorkerProcess};
use common::ledger::{self, SteadyFlow};
use common::results::{drain, in_queues};
use serde_json::json;
use toolq::job::Job;
use toolq::producer::{BatchOptions, CancelOutcome, JobState, Producer};
use toolq::queue::{Broker, QueueKeys, RedisTarget};

fn jobs_per_queue() -> usize {
    std::env::var("TOOLQ_TEST_CLUSTER_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn job(value: serde_json::Value) -> Job {
    serde_json::from_value(value).expect("a job")
}

async fn enqueue(
    producer: &Producer,
    queues: &[String],
    n: usize,
    make: impl Fn(usize) -> Job,
) -> Vec<(String, Vec<String>)> {
    let mut sent = Vec::new();
    for queue in queues {
        let jobs: Vec<Job> = (0..n).map(&make).collect();
        let submitted = producer
            .enqueue_batch(queue, &jobs, &BatchOptions::default())
            .await
            .expect("enqueue on the cluster");
        sent.push((queue.clone(), submitted.ids));
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_over_three_masters_drain_survive_a_worker_kill_and_run_every_kind_of_job() {
    let started = Instant::now();
    let cluster = Cluster::start().await;
    println!("cluster of 6 nodes ok in {:?}", started.elapsed());
    let queues = cluster.queues_on_every_master("cl", 1).await;
    let mut masters = Vec::new();
    for q in &queues {
        masters.push(cluster.master_of(&QueueKeys::new(q).pending).await);
    }
    println!("queues {queues:?} on masters {masters:?}");
    let producer = producer(&cluster);
    let broker = producer.broker().clone();
    let n = jobs_per_queue();
    let mut running = workers(&cluster, &queues, 2, 8, &[]);

    // Drain: every job has its result.
    let sent = enqueue(&producer, &queues, n, |i| {
        job(json!({"tool": "echo", "args": {"i": i}}))
    })
    .await;
    let (took, lost) = drain(&broker, &in_queues(&sent), Duration::from_secs(120)).await;
    println!(
        "drain: {} jobs over {} queues in {took:?} ({:.0} jobs/s), lost {lost}",
        n * queues.len(),
        queues.len(),
        (n * queues.len()) as f64 / took.as_secs_f64()
    );
    assert_eq!(lost, 0, "jobs lost in a drain on the cluster");

    // kill -9 of a worker mid-drain: its jobs are recovered (heartbeat
    // timeout, 3 s here) and run by the other.
    let sent = enqueue(&producer, &queues, n, |i| {
        job(json!({"tool": "sleep", "args": {"ms": 5, "i": i}}))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running[0].signal(libc::SIGKILL);
    let (took, lost) = drain(&broker, &in_queues(&sent), Duration::from_secs(120)).await;
    println!(
        "kill -9 of one of 2 workers 300 ms into a drain of {} jobs: all done {took:?} after the kill, lost {lost}",
        n * queues.len()
    );
    assert_eq!(lost, 0, "jobs lost after a worker kill on the cluster");

    // Every kind of job, so every settling script runs on the cluster: a
    // unique job (enqueue.lua, its lock released by ack.lua), a scheduled
    // one (delayed, promote.lua), a failing one retried then buried
    // (retry.lua, bury.lua) whose on_failure follow-up goes to a queue on
    // another master, and an on_success follow-up to another master.
    let (here, there) = (&queues[0], &queues[1]);
    let now = toolq::job::now_ms();
    let jobs = vec![
        job(json!({"id": "u1", "tool": "echo", "args": {}, "unique_key": "k1"})),
        job(json!({"id": "later", "tool": "echo", "args": {}, "run_at": now + 500})),
        job(
            json!({"id": "f1", "tool": "fail", "args": {}, "max_attempts": 2,
            "on_failure": {"tool": "echo", "args": {"why": "$prev.error.message"}, "queue": there}}),
        ),
        job(json!({"id": "s1", "tool": "echo", "args": {"x": 1},
            "on_success": {"tool": "echo", "args": {"got": "$prev.output"}, "queue": there}})),
    ];
    producer
        .enqueue_batch(here, &jobs, &BatchOptions::default())
        .await
        .expect("enqueue every kind");
    let sent = vec![
        (
            here.clone(),
            vec!["u1".into(), "later".into(), "f1".into(), "s1".into()],
        ),
        (
            there.clone(),
            vec!["f1:on_failure".into(), "s1:on_success".into()],
        ),
    ];
    let (took, left) = drain(&broker, &in_queues(&sent), Duration::from_secs(60)).await;
    println!("every kind of job settled in {took:?}, missing {left}");
    assert_eq!(left, 0, "a job or a follow-up across slots is missing");
    let result: String = broker
        .query(
            "test",
            redis::cmd("GET").arg(QueueKeys::new(there).result("s1:on_success")),
        )
        .await
        .expect("the follow-up's result");
    assert!(result.contains("succeeded"), "{result}");
    let dead: u64 = broker
        .query("test", redis::cmd("ZCARD").arg(QueueKeys::new(here).dead))
        .await
        .expect("ZCARD dead");
    assert_eq!(dead, 1, "the failing job is buried");
    // The unique key is free again once its job is done.
    let again = producer
        .enqueue_batch(
            here,
            &[job(json!({"tool": "echo", "args": {}, "unique_key": "k1"}))],
            &BatchOptions::default(),
        )
        .await
        .expect("enqueue");
    assert!(again.duplicates.is_empty(), "the unique lock was released");

    // The operator's and the waiting producer's paths on the cluster: a
    // job waited for (its notification list, a dedicated connection's
    // BLPOP), a batch with a callback (batch_seal.lua, the count in
    // ack.lua), a running job found (locate.lua) and cancelled
    // (cancel.lua), a dead job retried (dead_retry.lua) and purged
    // (dead_purge.lua), stats over queues on three masters, and, once the
    // workers are gone, a queue deleted (a SCAN of its slot's master).
    let waited = producer
        .enqueue_and_wait(
            here,
            job(json!({"tool": "echo", "args": {"w": 1}})),
            &BatchOptions::default(),
            Duration::from_secs(30),
        )
        .await
        .expect("a job waited for");
    assert_eq!(waited.status.as_str(), "succeeded");
    let options = BatchOptions {
        callback: Some(toolq::job::FollowUp::new(
            "echo",
            json!({"ok": "$batch.succeeded", "of": "$batch.total"}),
        )),
        ..BatchOptions::default()
    };
    let batch = producer
        .enqueue_batch(
            here,
            &[
                job(json!({"tool": "echo", "args": {}})),
                job(json!({"tool": "echo", "args": {}})),
            ],
            &options,
        )
        .await
        .expect("a batch with a callback");
    let callback = batch.callback.clone().expect("a callback id");
    let (_, left) = drain(
        &broker,
        &in_queues(&[(here.clone(), vec![callback])]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(left, 0, "the batch callback ran");
    let refused = producer
        .enqueue_batch(
            here,
            &[job(json!({"tool": "echo", "args": {}}))],
            &BatchOptions {
                callback: Some(toolq::job::FollowUp::new("echo", json!({})).queue(there)),
                ..BatchOptions::default()
            },
        )
        .await
        .expect_err("a callback to a queue of another slot is refused");
    println!("a callback to another slot: {refused}");

    let slow = producer
        .enqueue(
            here,
            job(json!({"id": "slow", "tool": "sleep", "args": {"ms": 20000}})),
        )
        .await
        .expect("enqueue");
    common::eventually(Duration::from_secs(30), "the slow job runs", || {
        let (producer, here, slow) = (&producer, here.clone(), slow.clone());
        async move {
            producer
                .job(&here, &slow)
                .await
                .is_ok_and(|v| v.state == JobState::Running)
        }
    })
    .await;
    let (outcome, view) = producer
        .cancel_and_wait(here, &slow, Duration::from_secs(30))
        .await
        .expect("cancel");
    assert_eq!(outcome, CancelOutcome::Requested);
    assert_eq!(view.state, JobState::Cancelled, "{view:?}");

    assert!(producer
        .dead_retry(here, "f1", Duration::from_secs(60))
        .await
        .expect("dead retry"));
    common::eventually(
        Duration::from_secs(30),
        "the retried job dies again",
        || {
            let (producer, here) = (&producer, here.clone());
            async move {
                producer
                    .job(&here, "f1")
                    .await
                    .is_ok_and(|v| v.state == JobState::Dead)
            }
        },
    )
    .await;
    assert_eq!(producer.dead_purge(here, None).await.expect("purge"), 1);
    let stats = producer
        .stats(Duration::from_secs(3))
        .await
        .expect("stats over the cluster");
    for q in &queues {
        assert!(stats.iter().any(|s| &s.queue == q), "stats lists {q}");
    }
    for mut w in running.drain(..) {
        w.signal(libc::SIGTERM);
        w.wait_exit(Duration::from_secs(30));
    }
    // The worker killed above counts as live until its heartbeat is 3 s
    // old (on a cluster nothing else declares it dead), and the jobs since
    // may have taken less: deleting is refused until then.
    let asked = Instant::now();
    let deleted = loop {
        match producer.delete_queue(there, Duration::from_secs(3)).await {
            Ok(n) => break n,
            Err(toolq::producer::ProducerError::Refused(why))
                if asked.elapsed() < Duration::from_secs(15) =>
            {
                println!("delete refused for now: {why}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("delete a queue: {e}"),
        }
    };
    println!("deleted {there}: {deleted} keys");
    assert!(deleted > 0, "the queue's keys were found on its master");
}

/// What one scenario with a steady producer saw.
struct Flow {
    enqueued: usize,
    refused: usize,
    /// Jobs the producer saw as enqueued that never ran.
    lost: Vec<String>,
    /// Of those, enqueued after `mark` (the promotion, or the migration's end).
    lost_after_mark: usize,
    duplicated: usize,
    /// Longest pause in jobs running, after the disruption began.
    flow_gap: Duration,
}

/// Runs `disrupt` while a Rust producer enqueues a `count` job every 5 ms
/// onto `queue` and two worker processes run them (faster than they come);
/// `disrupt` returns the instant after which nothing may be lost. Then
/// waits until every job seen as enqueued ran (or nothing moved for 10 s)
/// and reads the ledger, which counts each job's runs outside the cluster.
async fn with_steady_flow<F, Fut>(
    seeds: &[String],
    queue: &str,
    wait_replicas: u32,
    disrupt: F,
) -> Flow
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Instant>,
{
    let ledger = common::redis();
    let (seeds_env, wait, ledger_url) = (seeds.join(","), wait_replicas.to_string(), ledger.url());
    let env = [
        ("TOOLQ_REDIS_CLUSTER_NODES", seeds_env.as_str()),
        ("TOOLQ_HEARTBEAT_INTERVAL_MS", "500"),
        ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "3000"),
        ("TOOLQ_TEST_COUNT_URL", ledger_url.as_str()),
        ("TOOLQ_WAIT_REPLICAS", wait.as_str()),
    ];
    let mut workers: Vec<WorkerProcess> = (0..2)
        .map(|_| spawn_worker_on(CLUSTER_URL, &[queue], 4, &env))
        .collect();
    let target = RedisTarget::open(CLUSTER_URL, None, seeds)
        .expect("a cluster target")
        .with_wait_replicas(wait_replicas, Duration::from_millis(1000));
    let producer = Producer::from_broker(Arc::new(Broker::new(target).expect("a broker")));
    let flow = SteadyFlow::start(producer, queue, 20, &ledger_url).await;
    let mut ledger_conn = common::raw(&ledger_url).await;
    ledger::wait_runs(&ledger_conn, 60).await;
    let began = Instant::now();
    let mark = disrupt().await;
    // Produce on after the disruption, until 50 more jobs went in.
    flow.enqueue_more(50).await;
    let flowed = flow.stop().await;
    let counts = ledger::runs(&mut ledger_conn, &flowed.seen).await;
    for w in &mut workers {
        assert!(w.exited().is_none(), "a worker exited:\n{}", w.log_text());
    }
    let (lost, lost_after_mark) = ledger::lost(&flowed.seen, &counts, mark);
    let duplicated = ledger::ran_twice(&mut ledger_conn).await;
    for mut w in workers {
        w.signal(libc::SIGTERM);
        w.wait_exit(Duration::from_secs(30));
    }
    Flow {
        enqueued: flowed.seen.len(),
        refused: flowed.refused,
        lost,
        lost_after_mark,
        duplicated,
        flow_gap: ledger::longest_gap(&flowed.grew, began),
    }
}

fn report(label: &str, f: &Flow) {
    println!(
        "{label}: {} jobs enqueued ({} enqueue calls failed); longest pause in jobs running {:.2} s; \
         lost {} of the enqueued ({} of those after the mark), {} jobs ran twice or more",
        f.enqueued,
        f.refused,
        f.flow_gap.as_secs_f64(),
        f.lost.len(),
        f.lost_after_mark,
        f.duplicated,
    );
}

/// How far the replica lags when its master dies (its link is cut that long
/// before): the writes of that moment exist on the master alone.
const REPLICA_LAG: Duration = Duration::from_millis(300);

/// SIGKILLs the master of `queue` with its replica's link cut
/// [`REPLICA_LAG`] before; returns the instant of the promotion. With
/// `restart`, the dead master comes back (as a replica of the promoted one,
/// so that `WAIT` can be satisfied again) before this returns.
async fn kill_master_of(cluster: &mut Cluster, queue: &str, restart: bool) -> (Instant, Duration) {
    let master = cluster.master_of(&QueueKeys::new(queue).pending).await;
    let replica = cluster.replica_of(master).await;
    cluster.cut_replica(master, replica).await;
    tokio::time::sleep(REPLICA_LAG).await;
    cluster.kill(master);
    let killed = Instant::now();
    let promoted_after = cluster.wait_master(replica, Duration::from_secs(60)).await;
    let promoted = killed + promoted_after;
    if restart {
        cluster.restart(master).await;
    }
    (promoted, promoted_after)
}

/// A failover of the master of `queue` (see [`kill_master_of`]) under a
/// steady flow, reported under `label`.
async fn failover_flow(
    cluster: &mut Cluster,
    seeds: &[String],
    queue: &str,
    wait_replicas: u32,
    label: &str,
) -> Flow {
    let mut promoted_after = Duration::ZERO;
    let pa = &mut promoted_after;
    let f = with_steady_flow(seeds, queue, wait_replicas, move || async move {
        let (promoted, after) = kill_master_of(cluster, queue, true).await;
        *pa = after;
        promoted
    })
    .await;
    println!(
        "replica promoted {:.2} s after the kill",
        promoted_after.as_secs_f64()
    );
    report(label, &f);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_failovers_and_a_slot_migration_under_a_steady_flow() {
    let mut cluster = Cluster::start().await;
    let seeds = cluster.seed_list();
    let queues = cluster.queues_on_every_master("clf", 1).await;

    // A master SIGKILLed, replication asynchronous: the writes of its last
    // moments may be lost (reported), none after the promotion.
    let f = failover_flow(
        &mut cluster,
        &seeds,
        &queues[0],
        0,
        "master failover, asynchronous replication",
    )
    .await;
    assert_eq!(
        f.lost_after_mark, 0,
        "jobs enqueued after the promotion were lost"
    );
    assert!(f.enqueued > 100, "the producer kept enqueueing");

    // The same with wait_replicas = 1: no job a producer saw as enqueued is
    // lost. The dead master comes back as a replica, or nothing could be
    // written durably again.
    let f = failover_flow(
        &mut cluster,
        &seeds,
        &queues[1],
        1,
        "master failover, wait_replicas = 1",
    )
    .await;
    assert!(
        f.lost.is_empty(),
        "jobs seen as enqueued were lost: {:?}",
        f.lost
    );
    assert!(f.enqueued > 100, "the producer kept enqueueing");

    // The slot of a queue moves to another master while jobs flow.
    let pending = QueueKeys::new(&queues[2]).pending;
    let slot = cluster.slot_of(&pending).await;
    let from = cluster.master_of_slot(slot).await;
    let to = *cluster
        .master_ports()
        .await
        .iter()
        .find(|p| **p != from)
        .expect("another master");
    let mut moved = 0;
    let (c, m) = (&cluster, &mut moved);
    let f = with_steady_flow(&seeds, &queues[2], 0, move || async move {
        *m = c.migrate_slot(slot, from, to).await;
        Instant::now()
    })
    .await;
    assert_eq!(cluster.master_of_slot(slot).await, to, "the slot moved");
    println!("slot {slot} moved from {from} to {to} with {moved} keys");
    report("slot migration", &f);
    assert!(
        f.lost.is_empty(),
        "jobs lost in a slot migration: {:?}",
        f.lost
    );
}
