//! Wake-ups on a Redis Cluster. An idle worker learns of a job scheduled
//! for later from the `toolq:wake` channel, which it hears on one node;
//! PUBLISH on a cluster reaches every node's subscribers, so a job
//! scheduled on a queue of any master starts when due, not at the idle
//! worker's 30 s safety poll.

mod common;

use std::time::Duration;

use common::cluster::{node_cmd, Cluster};
use common::cluster_clients::{producer, workers};
use common::results::{drain, in_queues};
use serde_json::json;
use toolq::job::Job;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_scheduled_on_any_master_starts_when_due_on_an_idle_worker() {
    let cluster = Cluster::start().await;
    let queues = cluster.queues_on_every_master("wake", 1).await;
    let _workers = workers(&cluster, &queues, 1, 4, &[]);
    let p = producer(&cluster);
    // The worker is up: a job on each queue ran.
    let mut sent = Vec::new();
    for q in &queues {
        let id = p.enqueue(q, Job::new("echo", json!({}))).await.unwrap();
        sent.push((q.clone(), vec![id]));
    }
    let (_, left) = drain(p.broker(), &in_queues(&sent), Duration::from_secs(30)).await;
    assert_eq!(left, 0, "the worker runs jobs on every queue");
    // Idle now: nothing but the wake-ups tells it of a job due later. The
    // worker listens on one node (were it not subscribed, it would poll
    // every second and this test would prove nothing).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut listeners = 0;
    for node in cluster.nodes.iter() {
        let (_, n): (String, u64) = node_cmd(
            node.port(),
            redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(toolq::queue::keys::WAKE_CHANNEL),
        )
        .await
        .expect("PUBSUB NUMSUB");
        listeners += n;
    }
    assert_eq!(listeners, 1, "one subscription to the wake-up channel");
    let master = cluster.master_ports().await[0];
    for q in &queues {
        let (secs, micros): (String, String) =
            node_cmd(master, &redis::cmd("TIME")).await.expect("TIME");
        let now_ms = secs.parse::<u64>().unwrap() * 1000 + micros.parse::<u64>().unwrap() / 1000;
        let due = now_ms + 1500;
        let mut job = Job::new("echo", json!({}));
        job.run_at = Some(due);
        let id = p.enqueue(q, job).await.unwrap();
        let r = p.wait(q, &id, Duration::from_secs(40)).await.unwrap();
        let started = r.started_at;
        println!(
            "{q} (master {}): due {due}, started {} ms after",
            cluster
                .master_of(&toolq::queue::QueueKeys::new(q).pending)
                .await,
            started as i64 - due as i64
        );
        assert!(
            started + 5 >= due,
            "{id} started {} ms early",
            due - started
        );
        assert!(
            started <= due + 1500,
            "{id} started {} ms after it was due: the wake-up did not reach the worker",
            started - due
        );
    }
}
