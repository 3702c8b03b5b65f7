//! `toolq bench`: the benchmark anyone can run. Starts a throw-away
//! redis-server (or uses `--redis-url`), then measures drain, enqueue and
//! latency with a real `toolq worker` process, and what Redis itself does
//! (`redis-benchmark`) in the same run, and prints one table.

mod ceiling;
mod drain;
mod floor;
pub mod gateway;
mod latency;
pub mod mcp;
pub mod procstat;
pub mod scripts_only;

use std::time::Duration;

use crate::producer::{Producer, ProducerError};
use crate::queue::{QueueError, QueueKeys};
use crate::redis_server::RedisServer;

pub use latency::{percentiles, Percentiles};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("bench: cannot start a worker process: {0}")]
    Spawn(String),
    #[error("bench: gave up after {0:?}")]
    Timeout(Duration),
    #[error("bench: {0}")]
    Incomplete(String),
    #[error("bench: {0}")]
    Server(#[from] crate::redis_server::ServerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub jobs: usize,
    pub concurrency: usize,
    pub runs: usize,
    /// Use this Redis instead of starting one (its CPU is then not reported).
    pub redis_url: Option<String>,
    pub latency: bool,
    /// The binary whose `toolq worker` the bench runs; `None`: this one.
    pub worker_bin: Option<std::path::PathBuf>,
    /// Measure an MCP server's tool instead of the queue itself.
    pub mcp: Option<mcp::McpBench>,
    /// Measure a running gateway instead (`redis_url` is its Redis).
    pub gateway: Option<gateway::GatewayBench>,
}

pub async fn run(opts: BenchOptions) -> Result<(), BenchError> {
    let exe = match &opts.worker_bin {
        // Checked first: a wrong path would otherwise show only as a worker
        // that never registers, ten seconds into the first run.
        Some(bin) => std::fs::canonicalize(bin)
            .map_err(|e| BenchError::Spawn(format!("--worker-bin {}: {e}", bin.display())))?,
        None => std::env::current_exe().map_err(|e| BenchError::Spawn(e.to_string()))?,
    };
    let server = match &opts.redis_url {
        Some(_) => None,
        None => Some(
            tokio::task::spawn_blocking(RedisServer::start)
                .await
                .map_err(|e| BenchError::Spawn(e.to_string()))??,
        ),
    };
    let url = match (&opts.redis_url, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => unreachable_url(),
    };
    let redis_pid = server.as_ref().and_then(|s| s.pid());
    let producer = Producer::connect(&url, None)?;
    if let Some(b) = &opts.mcp {
        return mcp::run(b, &producer, &url).await;
    }
    if let Some(g) = &opts.gateway {
        return gateway::run(g, &producer).await;
    }
    header(&producer, &opts).await?;

    let base = drain::Shape {
        jobs: opts.jobs,
        concurrency: opts.concurrency,
        workers: 1,
        result_ttl_s: None,
        prefetch: 0,
    };
    let runs = drain_runs(&exe, &producer, &url, redis_pid, base, opts.runs, &server).await?;
    let drain = median(runs.iter().map(|r| r.drain_per_s));
    let enqueue = median(runs.iter().map(|r| r.enqueue_per_s));
    println!(
        "drain    {:>10.0} jobs/s   runs: {}",
        drain,
        list(&runs, |r| r.drain_per_s)
    );
    let host_bound = print_split(&runs, drain);
    println!(
        "         memory per stored result: {:.0} bytes (used_memory growth / jobs, 1 h TTL)",
        median(runs.iter().map(|r| r.bytes_per_result))
    );
    // The same drain without results, then spread over several workers.
    let mut rows = vec![("drain".to_owned(), drain)];
    if let Some(bound) = host_bound {
        rows.push((
            "drain's bound on this host's cores (both sides' CPU per job, above)".to_owned(),
            bound,
        ));
    }
    let variants = [
        (
            "fire and forget (result_ttl_s = 0)".to_owned(),
            drain::Shape {
                result_ttl_s: Some(0),
                ..base
            },
        ),
        (
            format!(
                "prefetch {} (held beyond the concurrency)",
                2 * opts.concurrency
            ),
            drain::Shape {
                prefetch: 2 * opts.concurrency,
                ..base
            },
        ),
        (
            format!("{FLEET} workers together"),
            drain::Shape {
                workers: FLEET,
                ..base
            },
        ),
    ];
    for (label, shape) in variants {
        // A row the workers cannot run (an older build's, `--worker-bin`,
        // refuses TOOLQ_PREFETCH as an unknown key) is said so beside the
        // others instead of ending the bench.
        let runs =
            match drain_runs(&exe, &producer, &url, redis_pid, shape, opts.runs, &server).await {
                Ok(runs) => runs,
                Err(e) => {
                    println!("         {label}: not measured: {e}");
                    continue;
                }
            };
        let rate = median(runs.iter().map(|r| r.drain_per_s));
        println!(
            "         {label}: {rate:.0} jobs/s   runs: {}",
            list(&runs, |r| r.drain_per_s)
        );
        print_split(&runs, rate);
        rows.push((label, rate));
    }
    let scripts = scripts_only_runs(&producer, redis_pid, opts.jobs, opts.runs, &server).await?;
    let alone = median(scripts.iter().map(|r| r.jobs_per_s));
    let redis = median(scripts.iter().map(|r| r.redis_cores));
    let scripts_us = redis / alone * 1e6;
    println!(
        "         scripts alone (fetch and ack of {} jobs a call, {} calls in flight, no worker): {alone:.0} jobs/s   runs: {}",
        scripts_only::BATCH,
        scripts_only::IN_FLIGHT,
        scripts
            .iter()
            .map(|r| format!("{:.0}", r.jobs_per_s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Redis's cores are known only when the server is the bench's own.
    let full_core = Some(alone / redis).filter(|r| r.is_finite());
    println!(
        "         CPU redis-server {redis:.2} cores = {:.1} µs/job, the loop driving it {:.2} cores (medians){}",
        scripts_us,
        median(scripts.iter().map(|r| r.driver_cores)),
        full_core.map_or(String::new(), |r| format!(
            "; at one full core of Redis: {r:.0} jobs/s"
        )),
    );
    rows.push(("scripts alone, no worker".to_owned(), alone));
    if let Some(r) = full_core {
        rows.push(("scripts alone at one full core of Redis".to_owned(), r));
    }
    println!(
        "enqueue  {:>10.0} jobs/s   runs: {}",
        enqueue,
        list(&runs, |r| r.enqueue_per_s)
    );

    if opts.latency {
        println!(
            "latency  rate     jobs   enqueue→start p50/p99/max ms   enqueue→result p50/p99/max ms"
        );
        for (rate, secs) in [(500, 4.0), (5000, 2.0)] {
            let l = latency::run(
                &exe,
                &producer,
                &url,
                rate,
                Duration::from_secs_f64(secs),
                opts.concurrency,
            )
            .await?;
            println!(
                "         {:>5}/s {:>6}   {:>6.2} / {:>6.2} / {:>6.2}        {:>6.2} / {:>6.2} / {:>6.2}",
                l.rate, l.jobs, l.to_start.p50, l.to_start.p99, l.to_start.max, l.to_result.p50, l.to_result.p99, l.to_result.max
            );
            // A reading beside the row, not a row of its own: a Redis the
            // bare client cannot reach as it is (a cluster, sentinels)
            // leaves it out, not the rest of the bench.
            match floor::run(&url, rate, Duration::from_secs_f64(secs)).await {
                Ok(f) => println!(
                    "           floor   {:>6.2} / {:>6.2} / {:>6.2}        (a bare client blocked in BLMOVE, no worker, just after)",
                    f.p50, f.p99, f.max
                ),
                Err(e) => println!("           floor   not measured: {e}"),
            }
        }
    }

    if let Some(s) = &server {
        producer
            .broker()
            .query::<()>("bench", &redis::cmd("FLUSHALL"))
            .await?;
        let port = s.port();
        let requests = 1_000_000;
        let ceilings =
            tokio::task::spawn_blocking(move || ceiling::measure(port, requests, redis_pid))
                .await
                .unwrap_or_default();
        println!("ceiling  redis-benchmark, 50 clients, {requests} requests each, same server:");
        for c in &ceilings {
            println!(
                "         {:<28} {:>10.0} ops/s   Redis {:>4.1} µs/op   toolq drain = {:.2}x",
                c.label,
                c.ops_per_s,
                c.redis_us_per_op,
                drain / c.ops_per_s
            );
        }
        if let Some(set) = ceilings.last() {
            for (label, rate) in &rows[1..] {
                println!(
                    "         {label} = {:.2}x of {}",
                    rate / set.ops_per_s,
                    set.label
                );
            }
            // Throughput ratios swing with whatever else the host runs;
            // Redis's CPU per job against its CPU per SET swings less (on
            // 2026-12-03 a SET cost 2 to 5.7 µs of CPU as the host slowed,
            // while the SET ceiling went from 528,821 to 116,850 ops/s).
            println!(
                "         Redis CPU per job, scripts alone: {:.1} µs = {:.1} SETs ({:.1} µs each): at equal Redis CPU, toolq = {:.2}x of {}",
                scripts_us,
                scripts_us / set.redis_us_per_op,
                set.redis_us_per_op,
                set.redis_us_per_op / scripts_us,
                set.label
            );
        }
    }
    Ok(())
}

async fn header(producer: &Producer, opts: &BenchOptions) -> Result<(), BenchError> {
    let version = producer
        .broker()
        .info_field("server", "redis_version")
        .await?
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!(
        "toolq {} bench — unix time {now}, {cores} cores, Redis {version} on the same host",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "{} echo jobs per run, one worker process at concurrency {}, every result written (1 h TTL), medians of {} runs",
        opts.jobs, opts.concurrency, opts.runs
    );
    if let Some(bin) = &opts.worker_bin {
        println!("workers: {} (--worker-bin)", bin.display());
    }
    Ok(())
}

/// Worker processes of the bench's several-workers row.
const FLEET: usize = 4;

/// `runs` scripts-only runs, each on a flushed server when it is ours.
async fn scripts_only_runs(
    producer: &Producer,
    redis_pid: Option<u32>,
    jobs: usize,
    runs: usize,
    server: &Option<RedisServer>,
) -> Result<Vec<scripts_only::ScriptsRun>, BenchError> {
    repeat(producer, server, runs, |i| async move {
        let keys = QueueKeys::new(&format!(
            "bench-scripts-{}",
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        ));
        let r = scripts_only::run(producer, &keys, redis_pid, jobs).await?;
        eprintln!(
            "  run {} (scripts alone): {:.0} jobs/s, redis-server {:.2} cores",
            i + 1,
            r.jobs_per_s,
            r.redis_cores
        );
        Ok(r)
    })
    .await
}

/// Runs `one` `runs` times, each on an emptied server when it is the
/// bench's own, and empties it after the last.
async fn repeat<T, F, Fut>(
    producer: &Producer,
    server: &Option<RedisServer>,
    runs: usize,
    mut one: F,
) -> Result<Vec<T>, BenchError>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, BenchError>>,
{
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        flush_if_ours(producer, server).await?;
        out.push(one(i).await?);
    }
    flush_if_ours(producer, server).await?;
    Ok(out)
}

/// Empties the server between runs, when it is the bench's own.
async fn flush_if_ours(
    producer: &Producer,
    server: &Option<RedisServer>,
) -> Result<(), BenchError> {
    if server.is_some() {
        producer
            .broker()
            .query::<()>("bench", &redis::cmd("FLUSHALL"))
            .await?;
    }
    Ok(())
}

/// `runs` drains of `shape`, each on a flushed server when it is ours.
async fn drain_runs(
    exe: &std::path::Path,
    producer: &Producer,
    url: &str,
    redis_pid: Option<u32>,
    shape: drain::Shape,
    runs: usize,
    server: &Option<RedisServer>,
) -> Result<Vec<drain::DrainRun>, BenchError> {
    repeat(producer, server, runs, |i| async move {
        let r = drain::run(exe, producer, url, redis_pid, shape).await?;
        eprintln!(
            "  run {} ({} worker(s), result_ttl_s {:?}): drain {:.0} jobs/s, enqueue {:.0} jobs/s",
            i + 1,
            shape.workers,
            shape.result_ttl_s,
            r.drain_per_s,
            r.enqueue_per_s
        );
        Ok(r)
    })
    .await
}

fn list(runs: &[drain::DrainRun], f: fn(&drain::DrainRun) -> f64) -> String {
    runs.iter()
        .map(|r| format!("{:.0}", f(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Peak RSS and where the CPU went: cores, and µs of each side per job
/// (steadier than jobs/s on a shared machine). Returns the most jobs/s the
/// host's cores could run at those µs per job, when Redis's are known.
fn print_split(runs: &[drain::DrainRun], rate: f64) -> Option<f64> {
    let worker = median(runs.iter().map(|r| r.worker_cores));
    let redis = median(runs.iter().map(|r| r.redis_cores));
    println!(
        "         peak RSS {:.1} MB (max of runs); CPU worker {:.2} cores = {:.1} µs/job, redis-server {:.2} cores = {:.1} µs/job (medians)",
        runs.iter().map(|r| r.peak_rss).max().unwrap_or(0) as f64 / 1e6,
        worker,
        worker / rate * 1e6,
        redis,
        redis / rate * 1e6,
    );
    println!(
        "         jobs in flight (fetched, not yet settled; sampled every ~2 ms): median {:.0}, max {} (medians of runs, max of runs)",
        median(runs.iter().map(|r| r.held.median)),
        runs.iter().map(|r| r.held.max).max().unwrap_or(0),
    );
    // With Redis on the same host, a job costs the host the CPU of both
    // sides: however well they overlap, its cores cannot run more jobs/s
    // than they have CPU for. Whether they ran out is the idle time beside.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let bound = cores_bound(cores, worker / rate, redis / rate);
    println!(
        "         host {cores:.0} cores: busy {:.2}, idle {:.2} (medians; the rest of the busy time is the bench and the kernel){}",
        median(runs.iter().map(|r| r.host_busy_cores)),
        median(runs.iter().map(|r| r.host_idle_cores)),
        bound.map_or(String::new(), |b| format!(
            "; at {:.1} µs of both sides' CPU per job, {cores:.0} cores run at most {b:.0} jobs/s",
            (worker + redis) / rate * 1e6
        )),
    );
    bound
}

/// The most jobs/s `cores` can run when each job takes `worker_s` and
/// `redis_s` seconds of CPU on the same host; `None` when a side is unknown.
fn cores_bound(cores: f64, worker_s: f64, redis_s: f64) -> Option<f64> {
    let per_job = worker_s + redis_s;
    (per_job > 0.0 && per_job.is_finite()).then(|| cores / per_job)
}

fn unreachable_url() -> String {
    crate::config::DEFAULT_REDIS_URL.to_owned()
}

/// Median of the finite values (NaN when there are none).
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert!(median([f64::NAN].into_iter()).is_nan());
        let mut v: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50, p.p99, p.max), (51.0, 99.0, 100.0));
    }

    #[test]
    fn host_bound_is_cores_over_both_sides_cpu_per_job() {
        // 5.5 + 6.4 µs per job on 2 cores: 168,067 jobs/s at most.
        let b = cores_bound(2.0, 5.5e-6, 6.4e-6).unwrap();
        assert!((b - 168_067.2).abs() < 1.0, "{b}");
        assert_eq!(cores_bound(2.0, 5.5e-6, f64::NAN), None);
        assert_eq!(cores_bound(2.0, 0.0, 0.0), None);
    }
}
