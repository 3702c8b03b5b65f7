//! The reaper: finds workers whose heartbeat stopped and moves their jobs
//! back to the front of pending (the recover script re-checks staleness, so
//! exactly one live worker recovers each job). Runs at start-up, then four
//! times per heartbeat interval: a dead worker's jobs are back in pending at
//! most a quarter interval after its heartbeat went stale (once per interval
//! let a killed worker's jobs wait up to a whole extra interval); the check is
//! one cheap `ZRANGEBYSCORE`.

use std::sync::Arc;

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

pub struct Reaper {
    pub ctx: Arc<Ctx>,
}

impl Reaper {
    pub async fn run(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.round().await {
                self.ctx.outage.failed("reap", &e);
            }
            sleep_or_stop(self.ctx.config.heartbeat_interval() / 4, &stop).await;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    async fn round(&self) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        // Right after an outage every heartbeat is old: give live workers
        // time to beat again before judging them.
        if ctx.outage.is_down() || ctx.outage.since_last().is_some_and(|d| d < reap_grace(ctx)) {
            return Ok(());
        }
        let timeout = ctx.config.heartbeat_timeout();
        for keys in &ctx.queues.keys {
            let stale = ctx.broker.stale_workers(keys, timeout, BATCH).await?;
            for dead in stale.iter().filter(|w| **w != ctx.worker_id) {
                let Some((recovered, buried)) = ctx
                    .broker
                    .recover(
                        keys,
                        dead,
                        timeout,
                        ctx.config.max_recoveries,
                        ctx.dead_caps(),
                    )
                    .await?
                else {
                    continue;
                };
                tracing::info!(queue = %keys.name, worker = %dead, recovered,
                    buried = buried.len(), "recovered the jobs of a dead worker");
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
        Ok(())
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
