//! The reaper: finds dead workers and moves their jobs back to the front of
//! pending (the recover script re-checks the heartbeat's age on Redis's
//! clock, so exactly one live worker recovers each job). Runs at start-up,
//! then four times per heartbeat interval; the usual round is one cheap
//! `ZRANGEBYSCORE`.
//!
//! Two ways to be dead. A worker none of whose Redis connections is left (a
//! killed process: the kernel closes its sockets and Redis drops them at
//! once) is dead when its heartbeat is older than the interval plus
//! `disconnect_grace_ms`: within about a second. One that keeps connections
//! open but stops beating (paused, partitioned, stuck) is dead after the
//! heartbeat timeout. The connections are read (`CLIENT LIST`) only in a
//! round that found a heartbeat past the short limit, which a live fleet
//! never shows; they only make a worker a candidate earlier, the fenced
//! script still decides.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::heartbeat::reap_grace;
use super::metrics_init::POISONED_TOOL_LABEL;
use crate::health::metrics::{JOBS_DEAD, JOBS_RECOVERED};
use crate::job::{self, ErrorInfo, JobResult};
use crate::queue::{QueueError, QueueKeys};

/// Most dead workers handled per queue per round.
const BATCH: usize = 20;
/// Added to the time until the next heartbeat passes the limit, so that it
/// has when the reaper looks.
const NEXT_SLACK: Duration = Duration::from_millis(5);

pub struct Reaper {
    pub ctx: Arc<Ctx>,
    /// Redis refused `CLIENT LIST` (an ACL from before it): connections are
    /// not looked at again, and only the heartbeat timeout declares death.
    pub blind: bool,
}

/// Why a worker was declared dead, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No connection of its left and its heartbeat past the short limit.
    Disconnected,
    /// Its heartbeat older than the timeout.
    Heartbeat,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Disconnected => "disconnected",
            Reason::Heartbeat => "heartbeat_timeout",
        }
    }
}

impl Reaper {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Reaper { ctx, blind: false }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let period = self.ctx.config.heartbeat_interval() / 4;
            let wait = match self.round().await {
                // A heartbeat about to pass the limit is looked at right
                // then (a live fleet's never are: they beat first).
                Ok(Some(next)) => (next + NEXT_SLACK).min(period),
                Ok(None) => period,
                Err(e) => {
                    self.ctx.outage.failed("reap", &e);
                    period
                }
            };
            sleep_or_stop(wait, &stop).await;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// One pass over every queue; returns how soon another heartbeat will
    /// pass the (shortest) limit, if any will.
    async fn round(&mut self) -> Result<Option<Duration>, QueueError> {
        let ctx = self.ctx.clone();
        // Right after an outage every heartbeat is old: give live workers
        // time to beat again before judging them.
        if ctx.outage.is_down()
            || ctx
                .outage
                .since_last()
                .is_some_and(|d| d < reap_grace(&ctx))
        {
            return Ok(None);
        }
        let timeout = ctx.config.heartbeat_timeout();
        let fast = ctx.config.disconnected_timeout().filter(|_| !self.blind);
        // Read once per round, and only if some heartbeat is late.
        let mut connected: Option<HashSet<String>> = None;
        let mut soonest: Option<Duration> = None;
        for keys in &ctx.queues.keys {
            let (late, next) = ctx
                .broker
                .late_workers(keys, fast.unwrap_or(timeout), BATCH)
                .await?;
            soonest = match (soonest, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for dead in late.iter().filter(|w| **w != ctx.worker_id) {
                let (limit, reason) = match fast {
                    Some(fast) if !self.is_connected(&mut connected, dead).await? => {
                        (fast, Reason::Disconnected)
                    }
                    _ => (timeout, Reason::Heartbeat),
                };
                let Some((recovered, buried)) = ctx
                    .broker
                    .recover(
                        keys,
                        dead,
                        limit,
                        ctx.config.max_recoveries,
                        ctx.dead_caps(),
                    )
                    .await?
                else {
                    continue;
                };
                tracing::info!(queue = %keys.name, worker = %dead, recovered,
                    buried = buried.len(), reason = reason.as_str(),
                    "recovered the jobs of a dead worker");
                metrics::counter!(JOBS_RECOVERED, "queue" => keys.name.clone())
                    .increment(recovered);
                if !buried.is_empty() {
                    metrics::counter!(JOBS_DEAD, "queue" => keys.name.clone(), "tool" => POISONED_TOOL_LABEL)
                        .increment(buried.len() as u64);
                }
                for payload in &buried {
                    // One failed write must not skip the others' results.
                    if let Err(e) = self.record_poisoned(keys, dead, payload).await {
                        ctx.outage.failed("reap", &e);
                    }
                }
            }
        }
        ctx.outage.ok();
        Ok(soonest)
    }

    /// Whether `worker` has a connection open, from `CLIENT LIST` read at
    /// most once per round. A refusal turns the check off for good (the
    /// worker then counts as connected: the timeout alone decides).
    async fn is_connected(
        &mut self,
        connected: &mut Option<HashSet<String>>,
        worker: &str,
    ) -> Result<bool, QueueError> {
        if connected.is_none() {
            match self.ctx.broker.connected_workers().await {
                Ok(set) => *connected = Some(set),
                Err(e) if e.is_refused() => {
                    tracing::warn!(error = %e, "redis refuses CLIENT LIST to this worker's user: dead workers are found by the heartbeat timeout only (grant +client|list, see ops/redis/users.acl)");
                    self.blind = true;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(connected.as_ref().is_none_or(|set| set.contains(worker)))
    }

    /// Writes the `dead` result of a job buried as poison, so whoever waits
    /// for it learns its fate, and releases its unique lock so the same work
    /// can be enqueued again. If this fails, the job is still in the dead
    /// set; only its result is missing (and the lock waits for its TTL).
    async fn record_poisoned(
        &self,
        keys: &QueueKeys,
        dead_worker: &str,
        payload: &str,
    ) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        let Ok(job) = job::parse(payload.as_bytes(), ctx.limits) else {
            return Ok(());
        };
        let Some(id) = job.id.clone() else {
            return Ok(());
        };
        tracing::warn!(queue = %keys.name, job_id = %id, tool = %job.tool,
            recoveries = job.recoveries, "buried a job that kept killing its workers");
        let now = job::now_ms();
        let result = JobResult {
            id: id.clone(),
            tool: job.tool.clone(),
            status: "dead".into(),
            output: None,
            error: Some(ErrorInfo {
                kind: "poisoned".into(),
                message: format!(
                    "worker died while running this job {} times",
                    job.recoveries
                ),
            }),
            attempts: job.attempt.saturating_add(1),
            recoveries: job.recoveries,
            enqueued_at: job.enqueued_at,
            started_at: now,
            finished_at: now,
            duration_ms: 0.0,
            worker: dead_worker.to_owned(),
            cached: false,
            meta: job.meta.clone(),
        };
        let Ok(text) = serde_json::to_string(&result) else {
            return Ok(());
        };
        let ttl = job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s);
        ctx.broker
            .store_result(keys, &id, ttl, &text, job.batch.as_deref())
            .await?;
        if let Some(unique_key) = &job.unique_key {
            ctx.broker.release_unique(keys, unique_key, &id).await?;
        }
        Ok(())
    }
}
