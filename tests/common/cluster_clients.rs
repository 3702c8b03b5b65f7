//! The clients of a test [`Cluster`]: a Rust producer and `toolq` worker
//! processes that reach it through `TOOLQ_REDIS_CLUSTER_NODES`.

use std::sync::Arc;

use toolq::producer::Producer;
use toolq::queue::{Broker, RedisTarget};

use super::cluster::Cluster;
use super::fault_process::{spawn_worker_on, WorkerProcess};

/// What a cluster client gets for `redis_url`: only its scheme is used.
pub const CLUSTER_URL: &str = "redis://127.0.0.1:1";

/// A producer on the cluster.
pub fn producer(cluster: &Cluster) -> Producer {
    let target =
        RedisTarget::open(CLUSTER_URL, None, &cluster.seed_list()).expect("a cluster target");
    Producer::from_broker(Arc::new(Broker::new(target).expect("a broker")))
}

/// `n` worker processes of `concurrency` serving `queues` on the cluster,
/// with a 500 ms heartbeat, a 3 s heartbeat timeout and `extra_env`.
pub fn workers(
    cluster: &Cluster,
    queues: &[String],
    n: usize,
    concurrency: usize,
    extra_env: &[(&str, &str)],
) -> Vec<WorkerProcess> {
    let seeds = cluster.seeds();
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
    let mut env = vec![
        ("TOOLQ_REDIS_CLUSTER_NODES", seeds.as_str()),
        ("TOOLQ_HEARTBEAT_INTERVAL_MS", "500"),
        ("TOOLQ_HEARTBEAT_TIMEOUT_MS", "3000"),
    ];
    env.extend_from_slice(extra_env);
    (0..n)
        .map(|_| spawn_worker_on(CLUSTER_URL, &queues, concurrency, &env))
        .collect()
}

/// `toolq ARGS` against the cluster, to the end: exit code and both streams.
pub async fn cli(cluster: &Cluster, args: &[&str]) -> (i32, String) {
    let mut cmd = super::process::toolq(args);
    cmd.env("TOOLQ_REDIS_URL", CLUSTER_URL)
        .env("TOOLQ_REDIS_CLUSTER_NODES", cluster.seeds())
        .env("NO_COLOR", "1");
    let (status, out, err) = super::process::run(cmd, std::time::Duration::from_secs(30)).await;
    (status.code().unwrap_or(-1), out + &err)
}
