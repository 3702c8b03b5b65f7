//! Batch callbacks: a batch submitted with a callback job gets a hash
//! (`keys::batch_callback`) holding the callback and its jobs' counts. The
//! settling scripts count each job into it and push the callback when the
//! last one is settled (`scripts/batch_callback.lua`); the producer arms it
//! before the first job goes in and seals it, with the number of jobs,
//! after the last.

use super::broker::Broker;
use super::keys::QueueKeys;
use super::scripts;
use super::Result;

/// How long a batch's callback hash outlives its last change.
pub const CALLBACK_TTL_S: u64 = 7 * 86_400;

impl Broker {
    /// Arms batch `batch` of `keys`' queue with a callback that goes to
    /// queue `to`, as `parts` (`FollowUp::batch_parts`).
    pub async fn arm_batch_callback(
        &self,
        keys: &QueueKeys,
        batch: &str,
        to: &str,
        parts: &[String],
    ) -> Result<()> {
        self.check_callback_slot(keys, to)?;
        let hash = keys.batch_callback(batch);
        let parts = serde_json::to_string(parts).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &hash,
                &[("to", keys.follow_up_pending(to)), ("parts", parts)],
            )
            .ignore()
            .expire(&hash, CALLBACK_TTL_S as i64)
            .ignore();
        self.query_pipe("batch_callback", &pipe).await
    }

    /// Records that batch `batch` holds `jobs` jobs, all enqueued; the
    /// callback fires now if they are all settled already. True when the
    /// callback has been pushed (by this call or a settlement before it).
    pub async fn seal_batch(&self, keys: &QueueKeys, batch: &str, jobs: usize) -> Result<bool> {
        let mut c = self.conn().await?;
        let fired: i64 = scripts::BATCH_SEAL
            .key(keys.batch_callback(batch))
            .arg(jobs)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("batch_callback", e))?;
        Ok(fired == 1)
    }
}
