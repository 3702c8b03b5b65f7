//! Coming up: the side port and its zero-valued series, the check that
//! Redis does not evict keys, registration in every queue's worker set
//! (retried while Redis is unreachable), and the registration document
//! other processes read.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::{heartbeat, metrics_init, outage, Shutdown, WorkerError};
use crate::health;
use crate::queue::QueueError;
use crate::spec::HttpAddr;
use crate::tools::catalog::{self, WorkerTools};

pub(super) async fn start_side_port(
    ctx: &Arc<Ctx>,
    handle: health::PrometheusHandle,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, WorkerError> {
    health::describe_metrics();
    health::mark_worker_up(ctx.health.version);
    health::set_concurrency_limit(ctx.config.concurrency);
    metrics_init::register_zero_series(ctx);
    let addr: HttpAddr = ctx
        .config
        .http_addr
        .parse()
        .map_err(health::HealthError::from)?;
    let Some(addr) = addr.socket_addr() else {
        return Ok(None);
    };
    let listener = health::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz, /health, /metrics");
    let state = ctx.health.clone();
    let limits = health::SideLimits {
        max_connections: ctx.config.http_max_connections,
        header_timeout: Duration::from_millis(ctx.config.http_header_timeout_ms),
    };
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = health::serve_with(listener, state, handle, limits, async move {
            stop.cancelled().await
        })
        .await
        {
            tracing::error!(error = %e, "side port stopped");
        }
    })))
}

/// The shard layout of each queue of `specs`, as Redis has it now. When
/// it cannot be read (Redis unreachable at start-up, or a Redis user
/// without the right), one shard per queue: the heartbeat reads the layouts
/// again each beat and starts the worker again on the right shards as soon
/// as it can read them.
pub(super) async fn layouts(
    broker: &crate::queue::Broker,
    specs: &[crate::spec::QueueSpec],
) -> Vec<crate::queue::Shards> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    match broker.shard_layouts(&names).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the queues' shard layouts yet; serving shard 0 of each until the heartbeat can");
            vec![crate::queue::Shards::one(); names.len()]
        }
    }
}

/// Registers before any fetch, retrying while Redis is unreachable. False
/// when shutdown came first; an error when Redis refuses the credentials
/// or evicts keys (configuration mistakes: waiting cannot fix them, exit
/// code 2).
pub(super) async fn register(
    ctx: &Ctx,
    reg: &Registration,
    shutdown: &Shutdown,
) -> Result<bool, WorkerError> {
    let mut failures = 0;
    loop {
        let step = match eviction_policy(ctx).await {
            Ok(()) => heartbeat::Heartbeat::register(ctx, &reg.info, &reg.tools).await,
            Err(Eviction::Refused(why)) => return Err(WorkerError::Config(why)),
            Err(Eviction::Unknown(e)) => Err(e),
        };
        match step {
            Ok(()) => {
                ctx.outage.ok();
                return Ok(true);
            }
            Err(QueueError::Auth { message, .. }) => {
                return Err(WorkerError::Config(format!(
                    "redis authentication failed for {}: {message} (check the user name and password in the Redis URL)",
                    ctx.broker.target().masked_url()
                )));
            }
            Err(e) => {
                ctx.outage.failed("register", &e);
                tokio::select! {
                    _ = shutdown.begun() => return Ok(false),
                    _ = tokio::time::sleep(outage::retry_delay(failures)) => {}
                }
                failures += 1;
            }
        }
    }
}

/// Why the eviction policy check did not pass.
enum Eviction {
    /// An evicting policy, not allowed: the message for the operator.
    Refused(String),
    /// Redis did not answer; retried like the registration.
    Unknown(QueueError),
}

/// Refuses a Redis whose `maxmemory-policy` evicts keys: under memory
/// pressure it would delete queue keys (and the jobs in them), results and
/// registrations, where `noeviction` refuses writes instead, which the
/// worker and producers report. `allow_evicting_redis` accepts the risk.
/// A user that may not run `INFO` leaves the policy unknown: a warning.
async fn eviction_policy(ctx: &Ctx) -> Result<(), Eviction> {
    let each = match ctx
        .broker
        .info_field_each("memory", "maxmemory_policy")
        .await
    {
        Ok(each) => each,
        Err(e) if e.is_unavailable() => return Err(Eviction::Unknown(e)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read redis maxmemory-policy (INFO memory); make sure it is noeviction: an evicting policy loses jobs");
            return Ok(());
        }
    };
    // Each master of a cluster holds its own slots' queues: one that evicts
    // is as bad as a single server that does.
    let Some((node, policy)) = each.into_iter().find_map(|(node, policy)| {
        policy
            .filter(|p| p != "noeviction")
            .map(|policy| (node, policy))
    }) else {
        return Ok(());
    };
    if ctx.config.allow_evicting_redis {
        tracing::warn!(%policy, %node, "redis maxmemory-policy is not noeviction (allowed by allow_evicting_redis): under memory pressure Redis may evict queue keys and lose jobs");
        return Ok(());
    }
    Err(Eviction::Refused(format!(
        "redis at {node} has maxmemory-policy {policy}: under memory pressure it evicts keys, \
         and an evicted queue key loses its jobs. Set it to noeviction (`CONFIG SET \
         maxmemory-policy noeviction`, or maxmemory-policy in redis.conf), or set \
         allow_evicting_redis = true (TOOLQ_ALLOW_EVICTING_REDIS=true) to accept the risk"
    )))
}

/// What a worker writes about itself: who it is, and the tools it serves.
pub struct Registration {
    /// `toolq:worker:<id>`: host, pid, queues, concurrency, version.
    pub info: String,
    /// `toolq:catalog:worker:<id>`: the tool catalog entries.
    pub tools: String,
}

pub(super) fn registration(ctx: &Ctx) -> Registration {
    let info = serde_json::json!({
        "id": ctx.worker_id,
        "host": hostname(),
        "pid": std::process::id(),
        "queues": ctx.config.queues,
        "concurrency": ctx.config.concurrency,
        "prefetch": ctx.config.prefetch,
        "started_at": crate::job::now_ms(),
        "version": ctx.health.version,
    })
    .to_string();
    let tools = WorkerTools {
        worker: ctx.worker_id.clone(),
        tools: catalog::entries(&ctx.registry),
    };
    Registration {
        info,
        tools: serde_json::to_string(&tools).unwrap_or_else(|_| "{}".into()),
    }
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
