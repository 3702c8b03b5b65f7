//! The tool catalog in Redis: each worker publishes the tools it serves (a
//! JSON document it writes at start and keeps alive with its heartbeat),
//! listed in one sorted set scored by the last heartbeat, so reading the
//! catalog costs O(workers) and only reads (`ZRANGE`, `MGET`), never a scan
//! of the keyspace. A worker that is gone drops out when its document
//! expires; its id leaves the set a day later, at the next publication.
//! Scores are Redis's clock (`TIME`), like heartbeats: a worker whose own
//! clock is a day ahead must not forget every other worker's entry.

use std::time::Duration;

use redis::AsyncCommands;

use super::broker::Broker;
use super::keys;
use super::Result;

/// A worker id whose document is long gone leaves the set after this.
const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

impl Broker {
    /// Writes `worker`'s catalog document, expiring after `ttl` unless
    /// [`Broker::touch_tools`] keeps it.
    pub async fn publish_tools(&self, worker: &str, doc: &str, ttl: Duration) -> Result<()> {
        let now = self.time_ms().await?;
        let mut pipe = redis::pipe();
        pipe.set_ex(keys::catalog_worker(worker), doc, ttl.as_secs().max(1))
            .ignore()
            .zadd(keys::CATALOG_WORKERS, worker, now)
            .ignore()
            .zrembyscore(
                keys::CATALOG_WORKERS,
                0,
                now.saturating_sub(FORGET_AFTER_MS),
            )
            .ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail("catalog", e))
    }

    /// Extends `worker`'s catalog document; false when it had expired.
    pub async fn touch_tools(&self, worker: &str, ttl: Duration) -> Result<bool> {
        let now = self.time_ms().await?;
        let mut pipe = redis::pipe();
        pipe.expire(keys::catalog_worker(worker), ttl.as_secs().max(1) as i64)
            .zadd(keys::CATALOG_WORKERS, worker, now)
            .ignore();
        let mut c = self.conn().await?;
        let (extended,): (bool,) = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("catalog", e))?;
        Ok(extended)
    }

    /// Removes `worker`'s document (a graceful stop).
    pub async fn withdraw_tools(&self, worker: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.del(keys::catalog_worker(worker))
            .ignore()
            .zrem(keys::CATALOG_WORKERS, worker)
            .ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail("catalog", e))
    }

    /// Every live worker's document, as `(worker, JSON)`.
    pub async fn catalog(&self) -> Result<Vec<(String, String)>> {
        let mut c = self.conn().await?;
        let workers: Vec<String> = c
            .zrange(keys::CATALOG_WORKERS, 0, -1)
            .await
            .map_err(|e| self.fail("catalog", e))?;
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let docs_keys: Vec<String> = workers.iter().map(|w| keys::catalog_worker(w)).collect();
        let docs: Vec<Option<String>> = c
            .mget(&docs_keys)
            .await
            .map_err(|e| self.fail("catalog", e))?;
        Ok(workers
            .into_iter()
            .zip(docs)
            .filter_map(|(worker, doc)| doc.map(|d| (worker, d)))
            .collect())
    }
}
