//! The queue API for job progress: a worker stores the latest report of a
//! job it holds (fenced: see `scripts/progress.lua`); anyone reads it by id.

use std::time::Duration;

use redis::AsyncCommands;

use super::broker::Broker;
use super::jobs::BATCH_SLOTS;
use super::keys::QueueKeys;
use super::{scripts, Result};

/// One progress report of a held job, as the worker writes it.
#[derive(Debug, Clone, Copy)]
pub struct ProgressReport<'a> {
    /// The job's slot in this worker's active hash.
    pub slot: u64,
    pub id: &'a str,
    pub fraction: f64,
    pub message: &'a str,
    pub attempt: u32,
    /// How long the report is kept.
    pub ttl: Duration,
}

impl Broker {
    /// Stores `report` while `worker` still holds the job; false when it
    /// no longer does (nothing written).
    pub async fn write_progress(
        &self,
        keys: &QueueKeys,
        worker: &str,
        report: &ProgressReport<'_>,
    ) -> Result<bool> {
        let mut c = self.conn().await?;
        let written: i64 = scripts::PROGRESS
            .key(keys.active(worker))
            .key(keys.progress(report.id))
            .arg(report.slot / BATCH_SLOTS)
            .arg(report.slot % BATCH_SLOTS + 1)
            .arg(report.fraction)
            .arg(report.message)
            .arg(report.attempt)
            .arg(report.ttl.as_millis().max(1) as u64)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("progress", e))?;
        Ok(written == 1)
    }

    /// The latest progress report of job `id`, as stored (JSON), if any.
    pub async fn progress(&self, keys: &QueueKeys, id: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(keys.progress(id))
            .await
            .map_err(|e| self.fail("progress", e))
    }

    /// The latest progress reports of jobs `ids`, in order (one `MGET`).
    pub async fn progress_many(
        &self,
        keys: &QueueKeys,
        ids: &[String],
    ) -> Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = ids.iter().map(|id| keys.progress(id)).collect();
        let mut c = self.conn().await?;
        redis::cmd("MGET")
            .arg(names)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("progress", e))
    }
}
