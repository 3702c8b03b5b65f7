//! Test harness: a real `redis-server` per test on a free port, workers run
//! in-process through the library API (or as real processes), and helpers to
//! push raw payloads and read results.
#![allow(dead_code)]

pub mod cluster;
pub mod cluster_clients;
pub mod connections;
pub mod fault_process;
pub mod gateway;
pub mod ledger;
pub mod process;
pub mod results;
pub mod sentinel;
pub mod sharded;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use toolq::config::Config;
use toolq::queue::{Broker, QueueKeys, RedisTarget};
use toolq::redis_server::RedisServer;
use toolq::tools::Registry;
use toolq::worker::{Shutdown, Worker};

/// Where `scripts/install-mcp-fixtures.sh` put the MCP test servers and
/// the Python tools (`TOOLQ_MCP_FIXTURES`); a clear failure when absent.
pub fn fixtures_dir() -> std::path::PathBuf {
    let dir = std::env::var("TOOLQ_MCP_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/toolq-mcp-fixtures")
        });
    assert!(
        dir.join("venv/bin/python").exists(),
        "test fixtures missing in {}: run `bash scripts/install-mcp-fixtures.sh`",
        dir.display()
    );
    dir
}

pub fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server starts (apt-get install redis-server)")
}

/// A unique queue name per test, so tests never see each other's jobs.
pub fn queue_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `n` jobs `{prefix}{i}` of the `sleep` tool, each sleeping `ms`: their
/// ids and payloads.
pub fn sleep_jobs(prefix: &str, n: usize, ms: u64) -> (Vec<String>, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let payloads = ids
        .iter()
        .map(|id| serde_json::json!({"tool": "sleep", "id": id, "args": {"ms": ms}}).to_string())
        .collect();
    (ids, payloads)
}

/// A configuration for tests: fast backoff and heartbeats, no side port.
pub fn config(url: &str, queue: &str, concurrency: usize) -> Config {
    Config {
        redis_url: url.to_owned(),
        queues: vec![queue.to_owned()],
        concurrency,
        http_addr: "off".into(),
        backoff_base_ms: 20,
        backoff_max_ms: 200,
        shutdown_grace_s: 5,
        ..Config::default()
    }
}

pub struct RunningWorker {
    pub shutdown: Shutdown,
    pub handle: tokio::task::JoinHandle<Result<(), toolq::worker::WorkerError>>,
    pub health: Arc<toolq::health::HealthState>,
}

impl RunningWorker {
    pub async fn stop(self) {
        self.shutdown.begin();
        let r = tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task did not panic");
        r.expect("worker returned Ok");
    }
}

pub fn start_worker(config: Config) -> RunningWorker {
    start_worker_with(config, Registry::with_builtins())
}

pub fn start_worker_with(config: Config, registry: Registry) -> RunningWorker {
    let shutdown = Shutdown::new();
    let mut worker = Worker::new(config, registry);
    let health = worker.health();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    RunningWorker {
        shutdown,
        handle,
        health,
    }
}

pub fn broker(url: &str) -> Broker {
    Broker::new(RedisTarget::new(url, None).unwrap()).unwrap()
}

/// A raw Redis connection, as any client in any language would have. The
/// tests observe through it while workers load Redis (with AOF `appendfsync
/// always` in places) on small CI machines, so it waits longer for a reply
/// than the client's default half second: a slow observer is not a failure.
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

pub async fn lpush(con: &mut redis::aio::MultiplexedConnection, queue: &str, payloads: &[String]) {
    let keys = QueueKeys::new(queue);
    for chunk in payloads.chunks(500) {
        let _: () = redis::cmd("LPUSH")
            .arg(&keys.pending)
            .arg(chunk)
            .query_async(con)
            .await
            .unwrap();
    }
}

/// Waits for a final result (succeeded or dead) of job `id`: the whole
/// document, as toolq's readers show it (`toolq::job::expand_result`).
pub async fn wait_result(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
    id: &str,
    within: Duration,
) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = result_of(con, queue, id).await {
            if v["status"] != "retrying" {
                return v;
            }
        }
        assert!(
            start.elapsed() < within,
            "no final result for {id} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Job `id`'s result document, if one is stored (of any status), whole as
/// toolq's readers show it.
pub async fn result_of(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
    id: &str,
) -> Option<Value> {
    let text = get(con, &QueueKeys::new(queue).result(id)).await;
    text.map(|t| {
        serde_json::from_str(&toolq::job::expand_result(id, &t)).expect("a result is JSON")
    })
}

/// Every job in `queue`'s pending list, parsed, newest first (as `LRANGE`
/// reads it; workers take from the end).
pub async fn pending_jobs(con: &mut redis::aio::MultiplexedConnection, queue: &str) -> Vec<Value> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(QueueKeys::new(queue).pending)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap();
    raw.iter()
        .map(|p| serde_json::from_str(p).expect("a pending job is JSON"))
        .collect()
}

/// The ids of the jobs on `queue`'s pending list, newest first.
pub async fn pending_ids(con: &mut redis::aio::MultiplexedConnection, queue: &str) -> Vec<String> {
    pending_jobs(con, queue)
        .await
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// A string key's value, if it is there.
pub async fn get(con: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(con).await.unwrap()
}

/// One count of `queue`'s stats hash (`succeeded`, `dead`, ...); 0 before
/// the first.
pub async fn stat(con: &mut redis::aio::MultiplexedConnection, queue: &str, field: &str) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(QueueKeys::new(queue).stats)
        .arg(field)
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Waits until `check` returns true, polling.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// All dead entries of a queue, parsed.
pub async fn dead_entries(con: &mut redis::aio::MultiplexedConnection, queue: &str) -> Vec<Value> {
    let keys = QueueKeys::new(queue);
    let raw: Vec<String> = redis::cmd("ZRANGE")
        .arg(&keys.dead)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap();
    raw.iter()
        .map(|s| serde_json::from_str(s).expect("dead entry is JSON"))
        .collect()
}

/// Jobs held in an active hash (it stores batches and counts their jobs).
pub async fn held_count(con: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(key)
        .arg("jobs")
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// A raw Redis command whose reply does not matter (seeding a test).
pub async fn redis_cmd(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(con).await.unwrap();
}

pub async fn exists(con: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    let n: u64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(con)
        .await
        .unwrap();
    n == 1
}

pub async fn zcard(con: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("ZCARD").arg(key).query_async(con).await.unwrap()
}

pub async fn llen(con: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("LLEN").arg(key).query_async(con).await.unwrap()
}

pub async fn redis_time_ms(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
    s * 1000 + us / 1000
}

/// Until at least `n` clients of the server wait in `BLMOVE` (the last
/// command each ran): workers' waits, blocked.
pub async fn until_waits_block(con: &redis::aio::MultiplexedConnection, n: usize) {
    eventually(Duration::from_secs(20), "the waits to block", || {
        let mut con = con.clone();
        async move {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut con)
                .await
                .unwrap();
            clients.matches("cmd=blmove").count() >= n
        }
    })
    .await;
}
