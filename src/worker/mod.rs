//! The worker: runs jobs from one or more queues under a concurrency cap.
//!
//! - `fetcher`: permits first, then one batch fetch per queue; a task per job.
//! - `waiter`: blocking wake-ups while idle (no polling).
//! - `executor`: one job: parse, validate, run with timeout, outcome.
//! - `guard`: around the call: `cache` (tool result cache, stampede lock)
//!   and `rate_limit` (per-tool limit shared by all workers).
//! - `acker`: writes outcomes in batches; holds them through Redis outages.
//! - `heartbeat`, `reaper`, `scheduler`, `monitor`: the background loops.
//! - `shutdown`: the two-stage stop signal; `backoff`, `queues`: pure helpers.

mod acker;
pub mod backoff;
mod cache;
mod context;
mod executor;
mod fetcher;
mod guard;
mod heartbeat;
mod job_metrics;
mod metrics_init;
mod monitor;
mod outage;
mod outcome;
mod queues;
mod rate_limit;
mod reaper;
mod scheduler;
mod shutdown;
mod waiter;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use executor::INVALID_TOOL_LABEL;
pub use queues::{QueueSet, QueueSpec};
pub use shutdown::Shutdown;

use crate::config::Config;
use crate::health::{self, HealthState, HttpAddr};
use crate::queue::{Broker, QueueError, RedisTarget};
use crate::tools::Registry;
use context::Ctx;

/// Longest wait for running jobs to notice cancellation after the grace.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for outcomes to be written during a stop while Redis is down.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker: {0}")]
    Config(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Health(#[from] health::HealthError),
    #[error("worker: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured worker, ready to [`run`](Worker::run).
pub struct Worker {
    config: Config,
    registry: Registry,
    unconfigured: Vec<(String, String)>,
    health: Option<Arc<HealthState>>,
}

impl Worker {
    pub fn new(config: Config, registry: Registry) -> Self {
        Worker {
            config,
            registry,
            unconfigured: Vec::new(),
            health: None,
        }
    }

    /// Jobs naming `tool` fail permanently with `message` (e.g. a tool that
    /// needs an API key nobody configured).
    pub fn unconfigured_tool(mut self, tool: &str, message: &str) -> Self {
        self.unconfigured
            .push((tool.to_owned(), message.to_owned()));
        self
    }

    /// The state the side port reports; available before `run` so embedding
    /// programs and tests can watch readiness.
    pub fn health(&mut self) -> Arc<HealthState> {
        self.health
            .get_or_insert_with(|| Arc::new(new_health(&self.config)))
            .clone()
    }

    /// Runs until `shutdown` completes its stop sequence.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), WorkerError> {
        let specs = self
            .config
            .queues
            .iter()
            .map(|s| QueueSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(WorkerError::Config)?;
        // Before any metric handle is made: handles taken earlier go nowhere.
        let metrics = health::install_recorder()?;
        let target =
            RedisTarget::new(&self.config.redis_url, self.config.redis_ca_file.as_deref())?;
        let broker = Arc::new(Broker::new(target)?);
        let health = self.health();
        let ctx = Arc::new(Ctx::new(
            broker,
            health.worker_id.clone(),
            QueueSet::new(&specs),
            self.registry,
            self.config,
            health,
            self.unconfigured,
        ));
        tracing::info!(worker = %ctx.worker_id, redis = %ctx.broker.target().masked_url(),
            queues = ?ctx.config.queues, concurrency = ctx.config.concurrency, "starting worker");

        let http_stop = CancellationToken::new();
        let http = start_side_port(&ctx, metrics, http_stop.clone()).await?;
        let info = registration(&ctx);
        if !register(&ctx, &info, &shutdown).await {
            http_stop.cancel();
            return Ok(());
        }
        warn_on_eviction(&ctx).await;
        let result = run_registered(ctx.clone(), info, shutdown).await;
        health::mark_worker_down();
        http_stop.cancel();
        if let Some(h) = http {
            let _ = h.await;
        }
        result
    }
}

fn new_health(config: &Config) -> HealthState {
    let id = format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    HealthState::new(id, config.queues.clone(), config.concurrency)
}

async fn start_side_port(
    ctx: &Arc<Ctx>,
    handle: health::PrometheusHandle,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, WorkerError> {
    health::describe_metrics();
    health::mark_worker_up(ctx.health.version);
    health::set_concurrency_limit(ctx.config.concurrency);
    metrics_init::register_zero_series(ctx);
    let addr: HttpAddr = ctx.config.http_addr.parse()?;
    let Some(addr) = addr.socket_addr() else {
        return Ok(None);
    };
    let listener = health::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz, /health, /metrics");
    let state = ctx.health.clone();
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = health::serve(
            listener,
            state,
            handle,
            async move { stop.cancelled().await },
        )
        .await
        {
            tracing::error!(error = %e, "side port stopped");
        }
    })))
}

/// Registers before any fetch, retrying while Redis is unreachable. False
/// when shutdown came first.
async fn register(ctx: &Ctx, info: &str, shutdown: &Shutdown) -> bool {
    let mut failures = 0;
    loop {
        match heartbeat::Heartbeat::register(ctx, info).await {
            Ok(()) => {
                ctx.outage.ok();
                return true;
            }
            Err(e) => {
                ctx.outage.failed("register", &e);
                tokio::select! {
                    _ = shutdown.begun() => return false,
                    _ = tokio::time::sleep(outage::retry_delay(failures)) => {}
                }
                failures += 1;
            }
        }
    }
}

async fn run_registered(
    ctx: Arc<Ctx>,
    info: String,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    let loops_stop = CancellationToken::new();
    let fetch_stop = CancellationToken::new();
    let stop_jobs = CancellationToken::new();
    let give_up = CancellationToken::new();

    let beat = heartbeat::Heartbeat {
        ctx: ctx.clone(),
        info,
    }
    .spawn(loops_stop.clone())?;
    let loops = vec![
        tokio::spawn(reaper::Reaper { ctx: ctx.clone() }.run(loops_stop.clone())),
        tokio::spawn(scheduler::Scheduler { ctx: ctx.clone() }.run(loops_stop.clone())),
        tokio::spawn(monitor::Monitor { ctx: ctx.clone() }.run(loops_stop.clone())),
    ];

    let (acker, ack_tx) = acker::Acker::new(ctx.clone());
    let acker = tokio::spawn(acker.run(give_up.clone()));
    let permits = Arc::new(Semaphore::new(ctx.config.concurrency));
    let tasks = TaskTracker::new();
    let wake = Arc::new(Notify::new());
    let idle = Arc::new(watch::channel(false).0);
    let mut fetchers = Vec::new();
    for queue in 0..ctx.queues.len() {
        let waiter = waiter::Waiter {
            ctx: ctx.clone(),
            queue,
            idle: idle.clone(),
            wake: wake.clone(),
        };
        fetchers.push(tokio::spawn(waiter.run(fetch_stop.clone())));
    }
    let fetcher = fetcher::Fetcher {
        ctx: ctx.clone(),
        permits: permits.clone(),
        acker: ack_tx,
        tasks: tasks.clone(),
        wake,
        idle,
        stop_jobs: stop_jobs.clone(),
    };
    fetchers.push(tokio::spawn(fetcher.run(fetch_stop.clone())));

    // Phase 1, quiet: stop taking jobs at once.
    shutdown.begun().await;
    ctx.health.set_shutting_down();
    let grace = ctx.config.shutdown_grace();
    tracing::info!(
        in_flight = ctx.health.in_flight(),
        grace_s = grace.as_secs(),
        "stopping: no new jobs"
    );
    fetch_stop.cancel();
    for f in fetchers {
        let _ = f.await;
    }
    // Phase 2: let running jobs finish within the grace period.
    tasks.close();
    let finished = tokio::select! {
        biased;
        _ = tasks.wait() => true,
        _ = tokio::time::sleep(grace) => false,
        _ = shutdown.forced() => false,
    };
    if !finished {
        tracing::warn!(
            in_flight = ctx.health.in_flight(),
            "grace period over: interrupting running jobs"
        );
        stop_jobs.cancel();
        let _ = tokio::time::timeout(CANCEL_WAIT, tasks.wait()).await;
    }
    // Phase 3: write what finished, put back what did not, leave.
    let give_up_later = give_up.clone();
    let flush_deadline = tokio::spawn(async move {
        tokio::time::sleep(FLUSH_WAIT).await;
        give_up_later.cancel();
    });
    // Bounded even if a tool stuck in a blocking call still holds a sender:
    // its job stays in the active hash and is put back below.
    if tokio::time::timeout(FLUSH_WAIT + CANCEL_WAIT, acker)
        .await
        .is_err()
    {
        tracing::warn!("some outcomes were not written in time; their jobs go back to pending");
    }
    flush_deadline.abort();
    // The loops stop before deregistering: a heartbeat after it would find
    // this worker gone, think it was declared dead, and register it again.
    loops_stop.cancel();
    for l in loops {
        let _ = l.await;
    }
    let _ = tokio::task::spawn_blocking(move || beat.join()).await;
    requeue_unfinished(&ctx).await;
    if let Err(e) = ctx
        .broker
        .deregister(&ctx.queues.keys, &ctx.worker_id)
        .await
    {
        tracing::warn!(error = %e, "could not deregister; the reaper will clean up");
    }
    tracing::info!("worker stopped");
    Ok(())
}

async fn requeue_unfinished(ctx: &Ctx) {
    for keys in &ctx.queues.keys {
        for attempt in 0..3 {
            match ctx.broker.requeue(keys, &ctx.worker_id, &[]).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(queue = %keys.name, jobs = n, "put unfinished jobs back");
                    }
                    break;
                }
                Err(e) if attempt == 2 => {
                    tracing::warn!(queue = %keys.name, error = %e,
                        "could not put unfinished jobs back; they will be recovered when this worker's heartbeat expires");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

async fn warn_on_eviction(ctx: &Ctx) {
    if let Ok(Some(policy)) = ctx.broker.info_field("memory", "maxmemory_policy").await {
        if policy != "noeviction" {
            tracing::warn!(%policy, "redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queue keys and lose jobs");
        }
    }
}

fn registration(ctx: &Ctx) -> String {
    serde_json::json!({
        "id": ctx.worker_id,
        "host": hostname(),
        "pid": std::process::id(),
        "queues": ctx.config.queues,
        "concurrency": ctx.config.concurrency,
        "started_at": crate::job::now_ms(),
        "version": ctx.health.version,
    })
    .to_string()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
