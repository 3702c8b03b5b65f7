//! Operator control by job id and by queue: cancelling a job, pausing and
//! deleting a queue (where a job is: `lookup`; listing jobs: `listing`).
//! The CLI (`toolq job`, `jobs`, `queue`), the gateway and the console all
//! call these. Lookups cost O(depth) in Redis: operator paths only.

use std::time::Duration;

use serde::Serialize;

use crate::queue::{CancelReply, QueueKeys};

use super::lookup::{JobState, JobView};
use super::{Producer, ProducerError, Result};

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "state", rename_all = "lowercase")]
pub enum CancelOutcome {
    /// Removed while pending or scheduled (its state then): it never runs.
    Removed(JobState),
    /// Running: its worker stops the call and settles it as cancelled
    /// within a heartbeat interval.
    Requested,
    /// It had finished already, in this state.
    Finished(JobState),
    Unknown,
}

impl Producer {
    /// Every queue in the registry, sorted.
    pub async fn queues(&self) -> Result<Vec<String>> {
        Ok(self.broker.registered_queues().await?)
    }

    /// The keys of every shard of `queue` a job may be in (one, unless
    /// the queue is sharded).
    pub(super) async fn shard_keys(&self, queue: &str) -> Result<Vec<QueueKeys>> {
        Ok(self.shard_layout(queue).await?.all(queue))
    }

    /// Cancels job `id`: a pending or scheduled job is removed at once and
    /// never runs; a running one is stopped by its worker.
    pub async fn cancel(&self, queue: &str, id: &str) -> Result<CancelOutcome> {
        let (keys, _) = self.locate(queue, id).await?;
        let prefix = serde_json::json!({
            "id": id,
            "status": "cancelled",
            "error": {"kind": "cancelled", "message": "cancelled by an operator"},
        })
        .to_string();
        // The script appends the fields it reads from the job.
        let prefix = prefix.strip_suffix('}').unwrap_or(&prefix);
        let ttl = crate::config::DEFAULT_RESULT_TTL_S;
        Ok(match self.broker.cancel(&keys, id, ttl, prefix).await? {
            CancelReply::Removed(state) => CancelOutcome::Removed(match state.as_str() {
                "scheduled" => JobState::Scheduled,
                _ => JobState::Pending,
            }),
            CancelReply::Requested => CancelOutcome::Requested,
            CancelReply::Finished(status) => CancelOutcome::Finished(JobState::of_status(&status)),
            CancelReply::Unknown => CancelOutcome::Unknown,
        })
    }

    /// [`Producer::cancel`], then for a running job waits up to `within`
    /// for its worker to settle it; returns the job as it then is.
    pub async fn cancel_and_wait(
        &self,
        queue: &str,
        id: &str,
        within: Duration,
    ) -> Result<(CancelOutcome, JobView)> {
        let outcome = self.cancel(queue, id).await?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let view = self.job(queue, id).await?;
            let settled = view.state != JobState::Running;
            if outcome != CancelOutcome::Requested
                || settled
                || tokio::time::Instant::now() >= deadline
            {
                return Ok((outcome, view));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Workers stop taking jobs from `queue` at once (told through the
    /// wake-up channel; within 30 s should they miss it); jobs already
    /// running finish.
    /// On a sharded queue, every shard is paused (shard 0 first: it is the
    /// one `is_paused` reads).
    pub async fn pause(&self, queue: &str) -> Result<()> {
        self.broker.register_queues(&[queue]).await?;
        for keys in self.shard_keys(queue).await? {
            self.broker.set_paused(&keys, true).await?;
        }
        Ok(())
    }

    pub async fn resume(&self, queue: &str) -> Result<()> {
        for keys in self.shard_keys(queue).await? {
            self.broker.set_paused(&keys, false).await?;
        }
        Ok(())
    }

    pub async fn is_paused(&self, queue: &str) -> Result<bool> {
        let flags = self.broker.control_flags(&[QueueKeys::new(queue)]).await?;
        Ok(flags.first().is_some_and(|f| f.paused))
    }

    /// Deletes every key of `queue` (jobs, results, dead set, totals) and
    /// unregisters it. Refused while a live worker serves it: its jobs in
    /// flight could not be settled.
    pub async fn delete_queue(&self, queue: &str, heartbeat_timeout: Duration) -> Result<u64> {
        let shards = self.shard_keys(queue).await?;
        for keys in &shards {
            let live = self.broker.live_workers(keys, heartbeat_timeout).await?;
            if !live.is_empty() {
                return Err(ProducerError::Refused(format!(
                    "queue `{queue}` has {} live worker(s) ({}): stop them first",
                    live.len(),
                    live.join(", ")
                )));
            }
        }
        let mut deleted = 0;
        // Shard 0 (with the layout) last: a failure part-way leaves the
        // layout that finds the rest.
        for keys in shards.iter().rev() {
            deleted += self.broker.delete_queue(keys).await?;
        }
        Ok(deleted)
    }
}
