//! The drain and enqueue measurements: N echo jobs enqueued through the
//! producer API (timed), then drained by one real `toolq worker` process
//! (timed), with the worker's peak RSS and the CPU split.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::procstat::{cpu_seconds, peak_rss};
use super::BenchError;
use crate::job::Job;
use crate::producer::Producer;
use crate::queue::QueueKeys;

/// Figures of one drain run.
#[derive(Debug, Clone)]
pub struct DrainRun {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub peak_rss: u64,
    pub worker_cores: f64,
    pub redis_cores: f64,
    pub bytes_per_result: f64,
}

pub async fn run(
    exe: &Path,
    producer: &Producer,
    url: &str,
    redis_pid: Option<u32>,
    n: usize,
    concurrency: usize,
) -> Result<DrainRun, BenchError> {
    let queue = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let keys = QueueKeys::new(&queue);
    let jobs: Vec<Job> = (0..n)
        .map(|i| Job::new("echo", json!({ "i": i })))
        .collect();
    let mem_before = used_memory(producer).await?;
    let start = Instant::now();
    producer
        .enqueue_batch(&queue, &jobs, &crate::producer::BatchOptions::default())
        .await?;
    let enqueue_per_s = n as f64 / start.elapsed().as_secs_f64();
    let mem_queued = used_memory(producer).await?;

    // The clock starts once the worker registered: process start-up is not
    // what this measures.
    let mut worker = start_worker(exe, producer, url, &keys, concurrency).await?;
    let pid = worker.id();
    let t0 = Instant::now();
    let (w0, r0) = (cpu_seconds(pid), redis_pid.and_then(cpu_seconds));
    wait_for(Duration::from_secs(600), || async {
        processed(producer, &keys).await >= n as u64
    })
    .await?;
    let elapsed = t0.elapsed().as_secs_f64();
    let (w1, r1) = (cpu_seconds(pid), redis_pid.and_then(cpu_seconds));
    let rss = peak_rss(pid).unwrap_or(0);
    stop(&mut worker);
    let mem_after = used_memory(producer).await?;
    let share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / elapsed,
        _ => f64::NAN,
    };
    // Results replace the queued payloads: count what the drain added on top
    // of the memory before enqueueing.
    let _ = mem_queued;
    Ok(DrainRun {
        enqueue_per_s,
        drain_per_s: n as f64 / elapsed,
        peak_rss: rss,
        worker_cores: share(w0, w1),
        redis_cores: share(r0, r1),
        bytes_per_result: mem_after.saturating_sub(mem_before) as f64 / n as f64,
    })
}

/// A worker process on the queue of `keys`, once it has registered.
pub async fn start_worker(
    exe: &Path,
    producer: &Producer,
    url: &str,
    keys: &QueueKeys,
    concurrency: usize,
) -> Result<Child, BenchError> {
    let worker = spawn_worker(exe, url, &keys.name, concurrency)?;
    wait_for(Duration::from_secs(10), || async {
        producer
            .broker()
            .query::<u64>("bench", redis::cmd("ZCARD").arg(&keys.workers))
            .await
            .unwrap_or(0)
            > 0
    })
    .await?;
    Ok(worker)
}

fn spawn_worker(
    exe: &Path,
    url: &str,
    queue: &str,
    concurrency: usize,
) -> Result<Child, BenchError> {
    Command::new(exe)
        .args([
            "worker",
            "--queue",
            queue,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .args(["--http-addr", "off"])
        // Through the environment, not argv: `ps` shows a command line.
        .env("TOOLQ_REDIS_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Spawn(e.to_string()))
}

pub fn stop(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

async fn processed(producer: &Producer, keys: &QueueKeys) -> u64 {
    let n: Option<u64> = producer
        .broker()
        .query(
            "bench",
            redis::cmd("HGET").arg(&keys.stats).arg("succeeded"),
        )
        .await
        .unwrap_or(None);
    n.unwrap_or(0)
}

async fn used_memory(producer: &Producer) -> Result<u64, BenchError> {
    let v = producer
        .broker()
        .info_field("memory", "used_memory")
        .await?;
    Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
}

pub async fn wait_for<F, Fut>(within: Duration, mut check: F) -> Result<(), BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        if start.elapsed() > within {
            return Err(BenchError::Timeout(within));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
