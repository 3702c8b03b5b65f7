//! The worker: runs jobs from one or more queues under a concurrency cap.
//!
//! - `fetcher`: permits first, then one batch fetch per queue; a task per job.
//! - `waiter`: blocking wake-ups while idle (no polling).
//! - `executor`: one job's task: parse, then its `attempt` (park, validate,
//!   guard, call, conclude), whose `outcome` goes to the acker; a payload
//!   over the size limit arrives as a stand-in, buried by `oversized`;
//!   `progress` stores what the call reports, rate limited and fenced.
//! - `guard`: around the call: `cache` (tool result cache, stampede lock)
//!   and `rate_limit` (per-tool limit shared by all workers).
//! - `acker`: the one writer of outcomes (ack, retry, bury, park, put back),
//!   in batches; holds them through Redis outages, stalls the worker when
//!   Redis keeps refusing them.
//! - `heartbeat`, `reaper`, `scheduler` (delayed jobs coming due),
//!   `periodic` (ticks of periodic schedules), `monitor`: the background loops;
//!   `wake`: the one subscription that tells them an idle queue has work, so
//!   they need not poll idle queues every second.
//! - `startup`: side port, registration; `stop`: the phased stop sequence.
//! - `shutdown`: the two-stage stop signal; `backoff`, `queues`: pure helpers.

mod acker;
mod attempt;
pub mod backoff;
mod cache;
mod context;
mod control;
mod executor;
mod fetcher;
mod guard;
mod heartbeat;
mod job_metrics;
mod lifeline;
mod metrics_init;
mod monitor;
mod outage;
mod outcome;
mod oversized;
mod periodic;
mod progress;
mod queues;
mod rate_limit;
mod reaper;
mod scheduler;
mod shutdown;
mod slots;
mod startup;
mod stop;
mod waiter;
mod wake;

use std::sync::Arc;

use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::spec::QueueSpec;
pub use executor::INVALID_TOOL_LABEL;
pub use queues::QueueSet;
pub use shutdown::Shutdown;

use crate::config::Config;
use crate::health::{self, HealthState};
use crate::queue::{Broker, QueueError, RedisTarget};
use crate::tools::mcp::McpServers;
use crate::tools::Registry;
use context::Ctx;

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
    /// Redis kept refusing to settle jobs; the worker stopped so that its
    /// jobs are recovered by others and its orchestrator restarts it.
    #[error("worker: stopped because redis refuses to settle jobs: {0}")]
    Stalled(String),
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
        let health = self.health();
        // Every connection of this process carries the worker's name, the
        // heartbeat thread's too (it clones the target): once none is left
        // the process is gone, and other reapers act within a second.
        let target = RedisTarget::open(
            &self.config.redis_url,
            self.config.redis_ca_file.as_deref(),
            &self.config.redis_cluster_nodes,
        )?
        .with_client_name(crate::queue::keys::connection_name(&health.worker_id))
        .with_wait_replicas(self.config.wait_replicas, self.config.wait_timeout());
        let broker = Arc::new(Broker::new(target)?);
        let mcp = Arc::new(McpServers::start(&self.config.mcp).await);
        mcp.register(&mut self.registry);
        // One lane per queue until the layouts are read (Redis may not
        // answer yet: the side port and the log come first).
        let build = |layouts: &[crate::queue::Shards]| {
            let mut ctx = Ctx::new(
                broker.clone(),
                health.worker_id.clone(),
                QueueSet::sharded(&specs, layouts),
                self.registry.clone(),
                self.config.clone(),
                health.clone(),
                self.unconfigured.clone(),
            );
            ctx.mcp = mcp.clone();
            Arc::new(ctx)
        };
        let mut ctx = build(&vec![crate::queue::Shards::one(); specs.len()]);
        tracing::info!(worker = %ctx.worker_id, redis = %ctx.broker.target().masked_url(),
            queues = ?ctx.config.queues, concurrency = ctx.config.concurrency, prefetch = ctx.config.prefetch,
            "starting worker");
        if ctx.config.prefetch > 0 {
            let once: Vec<&str> = ctx
                .registry
                .names()
                .into_iter()
                .filter(|n| ctx.registry.get(n).is_some_and(|t| !t.redeliver()))
                .collect();
            if !once.is_empty() {
                // Recovery cannot tell a prefetched job that never started
                // from one that ran: both count a recovery.
                tracing::warn!(tools = ?once, prefetch = ctx.config.prefetch,
                    "with prefetch, if this worker dies, the jobs it prefetched and had not started count a recovery as if they had run: these tools' jobs are then buried as `interrupted` instead of run again");
            }
        }

        let http_stop = CancellationToken::new();
        let http = match startup::start_side_port(&ctx, metrics, http_stop.clone()).await {
            Ok(http) => http,
            Err(e) => {
                mcp.shutdown().await;
                return Err(e);
            }
        };
        let result = loop {
            // A served queue's shards changed (or were never read): the old
            // lanes were wound down (running jobs finished, the rest put
            // back); serve the new ones. Unreadable layouts (Redis not up
            // yet) keep the lanes: the heartbeat reads them again.
            let layouts = startup::layouts(&broker, &specs).await;
            if layouts != ctx.queues.layouts {
                ctx = build(&layouts);
                tracing::info!(lanes = ctx.queues.len(), "serving the queues' shards");
            }
            health.set_shutting_down_to(false);
            let reg = startup::registration(&ctx);
            let registered = startup::register(&ctx, &reg, &shutdown).await;
            if !matches!(registered, Ok(true)) {
                break registered.map(|_| ());
            }
            let result = run_registered(ctx.clone(), reg, shutdown.clone()).await;
            let resharded = ctx.reshard.is_cancelled() && ctx.stall_reason().is_none();
            if result.is_err() || !resharded || shutdown.is_begun() {
                break result;
            }
            // A used Ctx's reshard token stays cancelled: a fresh one.
            ctx = build(&ctx.queues.layouts);
        };
        // After the stop sequence: running MCP calls had their grace.
        mcp.shutdown().await;
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
        startup::hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    HealthState::new(id, config.queues.clone(), config.concurrency)
}

async fn run_registered(
    ctx: Arc<Ctx>,
    reg: startup::Registration,
    shutdown: Shutdown,
) -> Result<(), WorkerError> {
    let loops_stop = CancellationToken::new();
    let fetch_stop = CancellationToken::new();
    let stop_jobs = CancellationToken::new();
    let give_up = CancellationToken::new();

    let beat = heartbeat::Heartbeat {
        ctx: ctx.clone(),
        info: reg.info,
        tools: reg.tools,
    }
    .spawn(loops_stop.clone())?;
    let loops = vec![
        tokio::spawn(reaper::Reaper::new(ctx.clone()).run(loops_stop.clone())),
        tokio::spawn(scheduler::Scheduler { ctx: ctx.clone() }.run(loops_stop.clone())),
        tokio::spawn(periodic::Periodic { ctx: ctx.clone() }.run(loops_stop.clone())),
        tokio::spawn(monitor::Monitor { ctx: ctx.clone() }.run(loops_stop.clone())),
        tokio::spawn(wake::Listener { ctx: ctx.clone() }.run(loops_stop.clone())),
    ];

    let (acker, ack_tx) = acker::Acker::new(ctx.clone());
    let acker = tokio::spawn(acker.run(give_up.clone()));
    let tasks = TaskTracker::new();
    let fetchers = spawn_fetchers(&ctx, ack_tx, &tasks, &stop_jobs, &fetch_stop);

    let running = stop::Running {
        fetch_stop,
        fetchers,
        tasks,
        stop_jobs,
        give_up,
        acker,
        loops_stop,
        loops,
        beat,
    };
    stop::stop(&ctx, &shutdown, running).await;
    match ctx.stall_reason() {
        Some(reason) => Err(WorkerError::Stalled(reason)),
        None => Ok(()),
    }
}

/// Starts one waiter per queue and the fetcher, which runs each job as a
/// task in `tasks` and sends its outcome to the acker.
fn spawn_fetchers(
    ctx: &Arc<Ctx>,
    acker: acker::AckSender,
    tasks: &TaskTracker,
    stop_jobs: &CancellationToken,
    fetch_stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    // A permit per job held (running, or prefetched and waiting); with a
    // prefetch, a run slot per job running.
    let permits = Arc::new(Semaphore::new(ctx.config.concurrency + ctx.config.prefetch));
    let run_slots = (ctx.config.prefetch > 0).then(|| slots::RunSlots::new(ctx.config.concurrency));
    let wake = Arc::new(Notify::new());
    let idle = Arc::new(watch::channel(false).0);
    let landed = Arc::new(waiter::Landed::new(ctx.queues.len()));
    let solo = Arc::new(tokio::sync::RwLock::new(()));
    let (delivered_tx, delivered) = tokio::sync::mpsc::unbounded_channel();
    let mut fetchers = Vec::new();
    for queue in 0..ctx.queues.len() {
        let waiter = waiter::Waiter {
            ctx: ctx.clone(),
            queue,
            idle: idle.clone(),
            wake: wake.clone(),
            landed: landed.clone(),
            permits: permits.clone(),
            solo: solo.clone(),
            delivered: delivered_tx.clone(),
            acker: acker.clone(),
        };
        fetchers.push(tokio::spawn(waiter.run(fetch_stop.clone())));
    }
    if let Some(slots) = &run_slots {
        fetchers.push(tokio::spawn(slots.clone().run(fetch_stop.clone())));
    }
    let fetcher = fetcher::Fetcher {
        ctx: ctx.clone(),
        permits: permits.clone(),
        run_slots,
        acker,
        tasks: tasks.clone(),
        wake,
        idle,
        landed,
        solo,
        stop_jobs: stop_jobs.clone(),
    };
    // Boxed, as the jobs' futures are: 7.8 KB, copied on the way into its task.
    fetchers.push(tokio::spawn(Box::pin(
        fetcher.run(delivered, fetch_stop.clone()),
    )));
    fetchers
}
