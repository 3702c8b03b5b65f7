//! Reading a queue's state (depths, totals, results, Redis's clock and
//! `INFO`), and writing a result outside the settling scripts.

use redis::AsyncCommands;

use super::broker::{Broker, Depths};
use super::cluster::Node;
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

    /// A job's result as each of `shards` holds it (at most one does), in
    /// one round trip of single-key reads (so it works on Redis Cluster).
    pub async fn result_in_shards(
        &self,
        shards: &[QueueKeys],
        id: &str,
    ) -> Result<Vec<Option<String>>> {
        let mut pipe = redis::pipe();
        for k in shards {
            pipe.get(k.result(id));
        }
        self.query_pipe("result", &pipe).await
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

    /// A field of `INFO`, e.g. `used_memory` from section `memory`. On a
    /// cluster, of every master: the sum when each is a whole number
    /// (memory), else the values joined by commas (a run id changes when
    /// any master restarts).
    pub async fn info_field(&self, section: &str, field: &str) -> Result<Option<String>> {
        let each = self.info_field_each(section, field).await?;
        let values: Vec<String> = each.into_iter().filter_map(|(_, v)| v).collect();
        if values.len() <= 1 {
            return Ok(values.into_iter().next());
        }
        let numbers: Option<Vec<u64>> = values.iter().map(|v| v.parse().ok()).collect();
        Ok(Some(match numbers {
            Some(n) => n.iter().sum::<u64>().to_string(),
            None => values.join(","),
        }))
    }

    /// A field of `INFO` on each master (the one server, or every master of
    /// a cluster), with the node it came from (`host:port`, or the masked
    /// URL).
    pub async fn info_field_each(
        &self,
        section: &str,
        field: &str,
    ) -> Result<Vec<(String, Option<String>)>> {
        let mut c = self.conn().await?;
        let nodes = match c.masters().await.map_err(|e| self.fail("info", e))? {
            Some(masters) => masters,
            None => vec![Node::Any],
        };
        let prefix = format!("{field}:");
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut cmd = redis::cmd("INFO");
            cmd.arg(section);
            let text: String = c
                .on_node(&node, cmd)
                .await
                .map_err(|e| self.fail("info", e))?;
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.trim().to_owned());
            let name = match node {
                Node::Addr(host, port) => format!("{host}:{port}"),
                _ => self.target().masked_url().to_owned(),
            };
            out.push((name, value));
        }
        Ok(out)
    }
}
