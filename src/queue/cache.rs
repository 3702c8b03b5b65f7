//! The queue API for what wraps a tool call: the result cache (with a fill
//! lock against stampedes) and the per-tool rate limit.
//!
//! Cache and rate-limit keys are global, not per queue, so on Redis Cluster
//! they sit in other slots than the queue keys, and the entry and its lock in
//! different slots from each other: every call here touches one key per
//! command or script, never a queue key.

use std::time::Duration;

use redis::AsyncCommands;

use super::broker::Broker;
use super::{keys, scripts, Result};

/// What a claim on a missing cache entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheClaim {
    /// The entry appeared meanwhile (someone else filled it).
    Hit(String),
    /// This caller holds the fill lock: compute, then fill and release.
    Claimed,
    /// Another caller holds the fill lock: wait for its entry.
    Busy,
}

/// The answer of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateSlot {
    /// A slot was taken: call now.
    Taken,
    /// Every slot of the window is used until this Redis time (unix ms).
    FullUntil(u64),
}

impl Broker {
    /// The cached output for `digest` of `tool`, if present.
    pub async fn cache_get(&self, tool: &str, digest: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(keys::cache(tool, digest))
            .await
            .map_err(|e| self.fail("cache", e))
    }

    /// After a miss: tries to take the fill lock for `lock_ttl` and reads the
    /// entry again in the same round trip, so an entry written between the
    /// miss and the claim is not computed twice.
    pub async fn cache_claim(
        &self,
        tool: &str,
        digest: &str,
        token: &str,
        lock_ttl: Duration,
    ) -> Result<CacheClaim> {
        let (claimed, entry): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(keys::cache_lock(tool, digest))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(lock_ttl.as_millis().max(1) as u64)
            .get(keys::cache(tool, digest))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(|e| self.fail("cache", e))?;
        match (entry, claimed.is_some()) {
            (Some(entry), claimed) => {
                if claimed {
                    self.cache_release(tool, digest, token).await?;
                }
                Ok(CacheClaim::Hit(entry))
            }
            (None, true) => Ok(CacheClaim::Claimed),
            (None, false) => Ok(CacheClaim::Busy),
        }
    }

    /// Stores `output` for `ttl` (millisecond precision).
    pub async fn cache_fill(
        &self,
        tool: &str,
        digest: &str,
        output: &str,
        ttl: Duration,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        c.pset_ex::<_, _, ()>(
            keys::cache(tool, digest),
            output,
            ttl.as_millis().max(1) as u64,
        )
        .await
        .map_err(|e| self.fail("cache", e))
    }

    /// Releases the fill lock if `token` still holds it; true when released.
    pub async fn cache_release(&self, tool: &str, digest: &str, token: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let released: i64 = scripts::UNLOCK
            .key(keys::cache_lock(tool, digest))
            .arg(token)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("cache", e))?;
        Ok(released == 1)
    }

    /// Takes one of `max` slots per `window` of `tool`, shared by every
    /// worker; `token` must be unique to this call.
    pub async fn rate_limit_take(
        &self,
        tool: &str,
        max: u32,
        window: Duration,
        token: &str,
    ) -> Result<RateSlot> {
        let mut c = self.conn().await?;
        let (taken, at): (i64, u64) = scripts::RATE_LIMIT
            .key(keys::rate_limit(tool))
            .arg(max)
            .arg(window.as_millis().max(1) as u64)
            .arg(token)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("rate_limit", e))?;
        Ok(if taken == 1 {
            RateSlot::Taken
        } else {
            RateSlot::FullUntil(at)
        })
    }
}
