//! Redis alone running toolq's job path: the same fetch and ack scripts a
//! worker calls, driven by a loop that runs no tool, parses nothing but the
//! id and keeps several calls in flight, so Redis is the only thing that
//! can saturate. Its jobs/s is the most one worker process could drain on
//! this server with these scripts, however fast the worker became: the
//! measured bound behind the drain's ratio to `SET`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use serde::Deserialize;
use serde_json::json;

use super::procstat::cpu_seconds;
use super::BenchError;
use crate::job::{Job, ResultRef};
use crate::producer::Producer;
use crate::queue::{slot, AckItem, FetchLimits, QueueKeys};

/// Jobs per fetch and per ack: twice a worker's default batch, as a worker
/// with a prefetch holds them.
pub const BATCH: usize = 100;
/// Fetch-and-ack loops at once on the producer's multiplexed connection:
/// enough that Redis always has the next call queued (4 left it idle 13 %
/// of the time on a 2-core host).
pub const IN_FLIGHT: usize = 8;

/// Figures of one scripts-only run.
#[derive(Debug, Clone, Copy)]
pub struct ScriptsRun {
    pub jobs_per_s: f64,
    /// Cores redis-server used while the loops ran (NaN when it is not ours).
    pub redis_cores: f64,
    /// Cores this process used to drive them.
    pub driver_cores: f64,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

/// Enqueues `jobs` echo jobs on the queue of `keys` (a fresh one) and
/// settles them all through the fetch and ack scripts.
pub async fn run(
    producer: &Producer,
    keys: &QueueKeys,
    redis_pid: Option<u32>,
    jobs: usize,
) -> Result<ScriptsRun, BenchError> {
    let batch: Vec<Job> = (0..jobs)
        .map(|i| Job::new("echo", json!({ "i": i })))
        .collect();
    producer
        .enqueue_batch(
            &keys.name,
            &batch,
            &crate::producer::BatchOptions::default(),
        )
        .await?;
    let worker = format!("bench-scripts-{}", std::process::id());
    // Registered as a worker registers: a fetch by anyone else is refused.
    producer.broker().heartbeat(keys, &worker, true).await?;
    let now = crate::job::now_ms();
    let next_batch = AtomicU64::new(1);
    let limits = FetchLimits {
        solo_at: 3,
        max_bytes: 1 << 20,
        head_bytes: 512,
    };
    let me = std::process::id();
    let (d0, r0) = (cpu_seconds(me), redis_pid.and_then(cpu_seconds));
    let start = Instant::now();
    let lane = || async {
        loop {
            let b = next_batch.fetch_add(1, Ordering::Relaxed);
            let payloads = producer
                .broker()
                .fetch(keys, &worker, BATCH, b, limits)
                .await?;
            if payloads.is_empty() {
                return Ok::<(), BenchError>(());
            }
            let items: Vec<AckItem> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| ack_item(&worker, b, i, p, now))
                .collect();
            producer.broker().ack(keys, &worker, &items).await?;
        }
    };
    try_join_all((0..IN_FLIGHT).map(|_| lane())).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let (d1, r1) = (cpu_seconds(me), redis_pid.and_then(cpu_seconds));
    let share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / elapsed,
        _ => f64::NAN,
    };
    let done: u64 = producer
        .broker()
        .query::<Option<u64>>(
            "bench",
            redis::cmd("HGET").arg(&keys.stats).arg("succeeded"),
        )
        .await?
        .unwrap_or(0);
    if done != jobs as u64 {
        return Err(BenchError::Incomplete(format!(
            "the scripts-only loops settled {done} of {jobs} jobs"
        )));
    }
    Ok(ScriptsRun {
        jobs_per_s: jobs as f64 / elapsed,
        redis_cores: share(r0, r1),
        driver_cores: share(d0, d1),
    })
}

/// The ack of job `i` of batch `b`, with a result of the size and shape a
/// worker writes for an `echo` job.
fn ack_item(worker: &str, b: u64, i: usize, payload: &[u8], now: u64) -> AckItem {
    let id = serde_json::from_slice::<Id>(payload)
        .map(|j| j.id)
        .unwrap_or_default();
    let output = json!({ "i": i });
    let result = ResultRef {
        id: &id,
        tool: "echo",
        status: "succeeded",
        output: Some(&output),
        error: None,
        attempts: 1,
        recoveries: 0,
        enqueued_at: Some(now),
        started_at: now,
        elapsed: Duration::from_micros(12),
        worker,
        cached: false,
        meta: None,
    }
    .to_json();
    AckItem {
        seq: slot(b, i),
        id,
        result_ttl_s: 3600,
        result,
        batch: None,
        unique_key: None,
        follow_up: None,
    }
}
