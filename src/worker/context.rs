//! What every part of a running worker shares.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::job_metrics::JobMetrics;
use super::outage::Outage;
use super::queues::QueueSet;
use crate::config::Config;
use crate::health::HealthState;
use crate::job::ParseLimits;
use crate::queue::Broker;
use crate::tools::Registry;

pub struct Ctx {
    pub broker: Arc<Broker>,
    pub worker_id: String,
    pub queues: QueueSet,
    pub registry: Registry,
    pub config: Config,
    pub health: Arc<HealthState>,
    pub limits: ParseLimits,
    /// Next fetch's batch number: with a job's index in its batch, it names
    /// the job's slot in the active hash (`queue::slot`).
    pub batch: AtomicU64,
    pub outage: Outage,
    pub metrics: JobMetrics,
    /// Cancelled when this worker learns it was declared dead: its jobs now
    /// belong to someone else, so everything running must stop.
    generation: Mutex<CancellationToken>,
    /// Messages for tools that exist but are not configured (e.g. weather
    /// without an API key), so their jobs fail with advice, not "unknown".
    pub unconfigured: Vec<(String, String)>,
    /// Tools that cache or are rate limited, derived once: only their jobs
    /// pay for the guard around the call.
    guarded: std::collections::HashSet<String>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        broker: Arc<Broker>,
        worker_id: String,
        queues: QueueSet,
        registry: Registry,
        config: Config,
        health: Arc<HealthState>,
        unconfigured: Vec<(String, String)>,
    ) -> Self {
        let limits = ParseLimits {
            max_bytes: config.max_payload_bytes,
            max_depth: config.max_json_depth,
        };
        let names: Vec<String> = queues.keys.iter().map(|k| k.name.clone()).collect();
        let guarded = registry
            .names()
            .into_iter()
            .filter(|name| {
                registry.get(name).is_some_and(|t| t.cache_ttl().is_some())
                    || config.tools.rate_limit(name).is_some()
            })
            .map(str::to_owned)
            .collect();
        Ctx {
            guarded,
            metrics: JobMetrics::new(&names),
            broker,
            worker_id,
            queues,
            registry,
            config,
            outage: Outage::new(health.clone()),
            health,
            limits,
            batch: AtomicU64::new(1),
            generation: Mutex::new(CancellationToken::new()),
            unconfigured,
        }
    }

    /// Whether jobs of `tool` go through the cache or the rate limit.
    pub fn is_guarded(&self, tool: &str) -> bool {
        self.guarded.contains(tool)
    }

    /// The token a job started now must watch.
    pub fn generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Cancels every running job: they were recovered by another worker.
    pub fn lose_jobs(&self) {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        g.cancel();
        *g = CancellationToken::new();
    }
}
