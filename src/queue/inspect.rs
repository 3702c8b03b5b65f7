//! Reading a queue's state (depths, totals, results, Redis's clock and
//! `INFO`), and writing a result outside the settling scripts.

use redis::AsyncCommands;

use super::broker::{Broker, Depths};
use super::keys::QueueKeys;
use super::{scripts, Result};

impl Broker {
    /// Writes a result outside the settling scripts (a job buried by
    /// recovery) and tells its batch's waiting producer.
    pub async fn store_result(
        &self,
        keys: &QueueKeys,
        id: &str,
        ttl_s: u64,
        result: &str,
        batch: Option<&str>,
    ) -> Result<()> {
        if ttl_s == 0 && batch.is_none() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        if ttl_s > 0 {
            pipe.set_ex(keys.result(id), result, ttl_s).ignore();
        }
        if let Some(b) = batch {
            pipe.rpush(keys.batch(b), id).ignore();
            pipe.expire(keys.batch(b), 86_400).ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail("result", e))
    }

    /// Releases the unique lock `unique_key` if job `id` still holds it
    /// (the job is over, but not through a script that releases it: buried
    /// by recovery as poison). True when released.
    pub async fn release_unique(
        &self,
        keys: &QueueKeys,
        unique_key: &str,
        id: &str,
    ) -> Result<bool> {
        let mut c = self.conn().await?;
        let released: i64 = scripts::UNLOCK
            .key(keys.unique(unique_key))
            .arg(id)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("unlock", e))?;
        Ok(released == 1)
    }

    /// Jobs per state, in one pipeline plus one per live worker.
    pub async fn depths(&self, keys: &QueueKeys) -> Result<Depths> {
        let mut c = self.conn().await?;
        let (pending, delayed, dead, workers): (u64, u64, u64, Vec<String>) = redis::pipe()
            .llen(&keys.pending)
            .zcard(&keys.delayed)
            .zcard(&keys.dead)
            .zrange(&keys.workers, 0, -1)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("depths", e))?;
        let mut active = 0;
        if !workers.is_empty() {
            let mut pipe = redis::pipe();
            for w in &workers {
                // The active hash counts its jobs (it stores batches).
                pipe.hget(keys.active(w), "jobs").llen(keys.landing(w));
            }
            let counts: Vec<Option<u64>> = pipe
                .query_async(&mut c)
                .await
                .map_err(|e| self.fail("depths", e))?;
            active = counts.iter().flatten().sum();
        }
        Ok(Depths {
            pending,
            active,
            delayed,
            dead,
        })
    }

    /// Redis's clock, in unix ms.
    pub async fn time_ms(&self) -> Result<u64> {
        let mut c = self.conn().await?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("time", e))?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// A job's stored result JSON.
    pub async fn result(&self, keys: &QueueKeys, id: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(keys.result(id))
            .await
            .map_err(|e| self.fail("result", e))
    }

    /// Many results at once (`None` where absent or expired).
    pub async fn results(&self, keys: &QueueKeys, ids: &[String]) -> Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = ids.iter().map(|id| keys.result(id)).collect();
        let mut c = self.conn().await?;
        redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("result", e))
    }

    /// The running totals of a queue (`processed`, `failed`, `retried`, `dead`).
    pub async fn totals(&self, keys: &QueueKeys) -> Result<std::collections::HashMap<String, u64>> {
        let mut c = self.conn().await?;
        c.hgetall(&keys.stats)
            .await
            .map_err(|e| self.fail("stats", e))
    }

    /// A field of `INFO`, e.g. `used_memory` from section `memory`.
    pub async fn info_field(&self, section: &str, field: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("info", e))?;
        let prefix = format!("{field}:");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned()))
    }
}
