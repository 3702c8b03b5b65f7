//! The drain and enqueue measurements: N echo jobs enqueued through the
//! producer API (timed), then drained by real `toolq worker` processes
//! (timed), with the workers' peak RSS and the CPU split.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::procstat::{cpu_seconds, host_cpu, peak_rss};
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
    /// Cores of the whole host busy and idle over the drain (`/proc/stat`).
    pub host_busy_cores: f64,
    pub host_idle_cores: f64,
    pub bytes_per_result: f64,
    /// Jobs the workers' active hashes held (fetched, not yet settled),
    /// sampled while the drain ran: running plus finished-but-unwritten.
    pub held: Held,
}

/// Jobs held in flight during a drain: median and largest sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held {
    pub median: f64,
    pub max: u64,
}

impl Held {
    fn of(mut samples: Vec<u64>) -> Held {
        samples.sort_unstable();
        Held {
            median: super::median(samples.iter().map(|&s| s as f64)),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// What a drain run puts on the queue and how many workers take it.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub jobs: usize,
    pub concurrency: usize,
    /// Worker processes draining the queue together.
    pub workers: usize,
    /// The jobs' `result_ttl_s`: `None` for the default (1 h), `Some(0)` for
    /// fire and forget (no result stored).
    pub result_ttl_s: Option<u64>,
    /// The workers' `prefetch`: 0 leaves it to the environment.
    pub prefetch: usize,
}

pub async fn run(
    exe: &Path,
    producer: &Producer,
    url: &str,
    redis_pid: Option<u32>,
    shape: Shape,
) -> Result<DrainRun, BenchError> {
    let n = shape.jobs;
    let queue = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let keys = QueueKeys::new(&queue);
    let jobs: Vec<Job> = (0..n)
        .map(|i| {
            let mut job = Job::new("echo", json!({ "i": i }));
            job.result_ttl_s = shape.result_ttl_s;
            job
        })
        .collect();
    // Enqueued on a queue of their own, handed over whole (RENAME) once every
    // worker has registered: the clock then starts with all of them ready,
    // and none starts early on the others.
    let staged = QueueKeys::new(&format!("{queue}-staged"));
    let mem_before = used_memory(producer).await?;
    let start = Instant::now();
    producer
        .enqueue_batch(
            &staged.name,
            &jobs,
            &crate::producer::BatchOptions::default(),
        )
        .await?;
    let enqueue_per_s = n as f64 / start.elapsed().as_secs_f64();

    let mut workers = Vec::with_capacity(shape.workers);
    for _ in 0..shape.workers.max(1) {
        let mut worker = worker_command(exe, url, &keys.name, shape.concurrency);
        if shape.prefetch > 0 {
            worker.env("TOOLQ_PREFETCH", shape.prefetch.to_string());
        }
        workers.push(
            worker
                .spawn()
                .map_err(|e| BenchError::Spawn(e.to_string()))?,
        );
    }
    let registered = wait_for(Duration::from_secs(10), || async {
        producer
            .broker()
            .query::<usize>("bench", redis::cmd("ZCARD").arg(&keys.workers))
            .await
            .unwrap_or(0)
            >= workers.len()
    })
    .await;
    let pids: Vec<u32> = workers.iter().map(Child::id).collect();
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<Option<f64>>();
    let t0 = Instant::now();
    let (w0, r0, h0) = (cpu(), redis_pid.and_then(cpu_seconds), host_cpu());
    let mut held = Vec::new();
    let drained = async {
        registered?;
        let ids: Vec<String> = producer
            .broker()
            .query(
                "bench",
                redis::cmd("ZRANGE").arg(&keys.workers).arg(0).arg(-1),
            )
            .await?;
        let actives: Vec<String> = ids.iter().map(|w| keys.active(w)).collect();
        producer
            .broker()
            .query::<()>(
                "bench",
                redis::cmd("RENAME").arg(&staged.pending).arg(&keys.pending),
            )
            .await?;
        let start = Instant::now();
        loop {
            let (done, now_held) = progress(producer, &keys, &actives).await;
            if done >= n as u64 {
                return Ok(());
            }
            held.push(now_held);
            if start.elapsed() > Duration::from_secs(600) {
                return Err(BenchError::Timeout(Duration::from_secs(600)));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let (w1, r1, h1) = (cpu(), redis_pid.and_then(cpu_seconds), host_cpu());
    let rss = pids.iter().filter_map(|&p| peak_rss(p)).max().unwrap_or(0);
    for worker in &mut workers {
        stop(worker);
    }
    drained?;
    let mem_after = used_memory(producer).await?;
    let share = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (b - a) / elapsed,
        _ => f64::NAN,
    };
    // Results replace the queued payloads: count what the drain added on top
    // of the memory before enqueueing.
    Ok(DrainRun {
        enqueue_per_s,
        drain_per_s: n as f64 / elapsed,
        peak_rss: rss,
        worker_cores: share(w0, w1),
        redis_cores: share(r0, r1),
        host_busy_cores: share(h0.map(|h| h.busy), h1.map(|h| h.busy)),
        host_idle_cores: share(h0.map(|h| h.idle), h1.map(|h| h.idle)),
        bytes_per_result: mem_after.saturating_sub(mem_before) as f64 / n as f64,
        held: Held::of(held),
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
    worker_command(exe, url, queue, concurrency)
        .spawn()
        .map_err(|e| BenchError::Spawn(e.to_string()))
}

fn worker_command(exe: &Path, url: &str, queue: &str, concurrency: usize) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([
        "worker",
        "--queue",
        queue,
        "--concurrency",
        &concurrency.to_string(),
    ])
    // The side port on, as workers run in production (its server and
    // the metrics it serves count in the RSS), on a port of its own.
    .args(["--http-addr", "127.0.0.1:0"])
    // Through the environment, not argv: `ps` shows a command line.
    .env("TOOLQ_REDIS_URL", url)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

pub fn stop(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and still own.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// Jobs succeeded so far and jobs the `actives` hashes hold now, in one
/// round trip (the poll itself must not weigh on the drain it measures).
async fn progress(producer: &Producer, keys: &QueueKeys, actives: &[String]) -> (u64, u64) {
    let mut pipe = redis::pipe();
    pipe.hget(&keys.stats, "succeeded");
    for active in actives {
        pipe.hget(active, "jobs");
    }
    let replies: Vec<Option<u64>> = producer
        .broker()
        .query_pipe("bench", &pipe)
        .await
        .unwrap_or_default();
    let done = replies.first().copied().flatten().unwrap_or(0);
    let held = replies.iter().skip(1).map(|h| h.unwrap_or(0)).sum();
    (done, held)
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
