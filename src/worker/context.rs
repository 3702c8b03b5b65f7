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
use crate::tools::http::{header_value, is_secret_header};
use crate::tools::mcp::McpServers;
use crate::tools::{Registry, Scrubber, Secret};

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
    /// Cancelled when Redis keeps refusing to settle jobs (see `acker`):
    /// the worker stops and exits with an error.
    pub stalled: CancellationToken,
    /// Lanes where this worker just delayed a job, or another said one has
    /// a new earliest delayed job (for the scheduler).
    pub delayed: super::scheduler::Delayed,
    /// What the wake-up listener tells the loops that poll idle lanes.
    pub wake: super::wake::WakeUps,
    /// Cancelled when the heartbeat sees a served queue's shard layout
    /// change: the worker winds down like a stop and starts again on the
    /// new lanes (see `Worker::run`).
    pub reshard: CancellationToken,
    /// Told by the fetcher when a fetch found this worker unregistered on
    /// a lane: the heartbeat beats every lane at once, which registers it
    /// again, instead of an idle lane waiting up to 3/5 of the timeout
    /// while every fetch round fails.
    pub beat_now: tokio::sync::Notify,
    stall_reason: Mutex<Option<String>>,
    /// Messages for tools that exist but are not configured (e.g. weather
    /// without an API key), so their jobs fail with advice, not "unknown".
    pub unconfigured: Vec<(String, String)>,
    /// Tools that cache or are rate limited, derived once: only their jobs
    /// pay for the guard around the call.
    guarded: std::collections::HashSet<String>,
    /// The MCP servers whose tools are registered (for `/health`).
    pub mcp: Arc<McpServers>,
    /// Paused queues and cancelled jobs, as the heartbeat last read them,
    /// and each queue's lifeline (which a lost queue also cuts: its jobs
    /// there belong to someone else, so those, and only those, stop).
    pub control: super::control::Control,
    /// Every secret this worker was configured with (tools' keys and
    /// tokens, MCP servers' header tokens, the Redis password), taken out
    /// of each output and error before it is stored or logged.
    pub scrub: Scrubber,
}

impl Ctx {
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
        let control = super::control::Control::new(&worker_id, &names);
        let lanes = queues.len();
        let wake = super::wake::WakeUps::new(&queues);
        let scrub = scrubber(&registry, &config);
        Ctx {
            scrub,
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
            stalled: CancellationToken::new(),
            reshard: CancellationToken::new(),
            beat_now: tokio::sync::Notify::new(),
            delayed: super::scheduler::Delayed::new(lanes),
            wake,
            stall_reason: Mutex::new(None),
            mcp: Arc::new(McpServers::default()),
            control,
            unconfigured,
        }
    }

    /// The dead set's caps, as the scripts that add to it take them.
    pub fn dead_caps(&self) -> crate::queue::DeadCaps {
        crate::queue::DeadCaps {
            max_jobs: self.config.dead_max_jobs,
            max_age: self.config.dead_max_age(),
            max_bytes: self.config.dead_max_bytes,
        }
    }

    /// Whether jobs of `tool` go through the cache or the rate limit.
    pub fn is_guarded(&self, tool: &str) -> bool {
        self.guarded.contains(tool)
    }

    /// Stops the worker because Redis refuses to settle its jobs; the first
    /// reason is the one reported.
    pub fn stall(&self, reason: String) {
        if let Ok(mut r) = self.stall_reason.lock() {
            r.get_or_insert(reason);
        }
        self.health.set_stalled();
        self.stalled.cancel();
    }

    /// Why the worker stalled, if it did.
    pub fn stall_reason(&self) -> Option<String> {
        self.stall_reason.lock().ok().and_then(|r| r.clone())
    }
}

/// The scrubber for everything secret in `config` and the tools of `registry`.
fn scrubber(registry: &Registry, config: &Config) -> Scrubber {
    let mut secrets = registry.secrets();
    let redis_password = crate::spec::UrlParts::parse(&config.redis_url).and_then(|u| u.password());
    secrets.extend(redis_password.map(Secret::from));
    // MCP servers are started after the registry is built; their header
    // tokens are read here the way the servers read them.
    let mcp_headers = config.mcp.servers.values().flat_map(|s| &s.headers);
    let secret_headers = mcp_headers.filter(|(name, spec)| is_secret_header(name, spec));
    for (_, spec) in secret_headers {
        if let Ok(value) = header_value(spec) {
            let words: Vec<&str> = value.split_whitespace().filter(|w| w.len() >= 8).collect();
            secrets.extend(words.into_iter().map(Secret::from));
            secrets.push(Secret::from(value));
        }
    }
    Scrubber::new(&secrets)
}
