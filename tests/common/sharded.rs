//! The start of a sharded-queue test on one Redis: a private
//! `redis-server`, a queue of N shards, a producer and worker processes.

use toolq::producer::Producer;
use toolq::redis_server::RedisServer;

use super::fault_process::{spawn_worker_process, WorkerProcess};

pub struct Sharded {
    /// Kept alive for the test's length.
    pub server: RedisServer,
    pub url: String,
    pub queue: String,
    pub con: redis::aio::MultiplexedConnection,
    pub producer: Producer,
}

/// A fresh server with a queue named after `prefix` set to `shards` shards.
pub async fn sharded(prefix: &str, shards: u32) -> Sharded {
    let server = super::redis();
    let url = server.url();
    let queue = super::queue_name(prefix);
    let con = super::raw(&url).await;
    let producer = Producer::connect(&url, None).expect("a producer");
    producer
        .set_shards(&queue, shards)
        .await
        .expect("the shard count is set");
    Sharded {
        server,
        url,
        queue,
        con,
        producer,
    }
}

/// `n` worker processes of `concurrency` on `queue`.
pub fn spawn_workers(url: &str, queue: &str, n: usize, concurrency: usize) -> Vec<WorkerProcess> {
    (0..n)
        .map(|_| spawn_worker_process(url, queue, concurrency, &[]))
        .collect()
}
