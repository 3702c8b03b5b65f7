//! The operator's view of Redis: discovering queues, and reading, retrying
//! and purging dead jobs. Off the hot path; scans and pages so a large
//! keyspace or dead set is never read in one reply.

use std::collections::BTreeSet;
use std::time::Duration;

use super::broker::Broker;
use super::cluster::Node;
use super::keys::{self, QueueKeys};
use super::scripts;
use super::Result;

/// Keys examined per `SCAN`/`ZSCAN` step.
const SCAN_COUNT: usize = 1000;

/// A dead job to put back on `pending`.
#[derive(Debug, Clone)]
pub struct DeadRetry {
    /// The dead-set member, exactly as stored.
    pub entry: String,
    /// The job's payload for its fresh run.
    pub payload: String,
    pub id: String,
    pub unique_key: Option<String>,
}

impl Broker {
    /// Every queue that has a pending, delayed, dead or workers key, sorted:
    /// a walk of the whole keyspace (every master of a cluster), only for a
    /// Redis that has no queue registry yet (see `registered_queues`).
    pub async fn discover_queues(&self) -> Result<Vec<String>> {
        let mut found = BTreeSet::new();
        for pattern in keys::queue_patterns() {
            for key in self.scan(&pattern, None).await? {
                if let Some(q) = keys::discovered_queue(&key) {
                    found.insert(q.to_owned());
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The keys matching `pattern`. On a cluster `SCAN` walks one node: the
    /// master of `slot_key`'s slot when every match shares it (one queue's
    /// keys), else each master in turn.
    pub(super) async fn scan(&self, pattern: &str, slot_key: Option<&str>) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        let nodes = match slot_key {
            Some(key) => vec![Node::MasterOf(key.to_owned())],
            None => c
                .masters()
                .await
                .map_err(|e| self.fail("scan", e))?
                .unwrap_or(vec![Node::Any]),
        };
        let mut out = Vec::new();
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, batch): (u64, Vec<String>) = c
                    .on_node(&node, cmd)
                    .await
                    .map_err(|e| self.fail("scan", e))?;
                out.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// Dead entries by rank: newest first when `newest_first`, else oldest.
    pub async fn dead_page(
        &self,
        keys: &QueueKeys,
        offset: usize,
        count: usize,
        newest_first: bool,
    ) -> Result<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let stop = offset + count - 1;
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(&keys.dead).arg(offset).arg(stop);
        if newest_first {
            cmd.arg("REV");
        }
        self.query("dead", &cmd).await
    }

    /// Dead entries whose text contains `needle`: the candidates of an id
    /// lookup, filtered by Redis rather than shipped whole.
    pub async fn dead_containing(&self, keys: &QueueKeys, needle: &str) -> Result<Vec<String>> {
        let pattern = format!("*{}*", glob_escape(needle));
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, flat): (u64, Vec<String>) = self
                .query(
                    "dead",
                    redis::cmd("ZSCAN")
                        .arg(&keys.dead)
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT),
                )
                .await?;
            // ZSCAN answers member, score, member, score...
            out.extend(flat.into_iter().step_by(2));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Moves dead jobs back to `pending`, atomically per call; returns how
    /// many moved (an entry already retried or purged is skipped).
    pub async fn dead_retry(
        &self,
        keys: &QueueKeys,
        items: &[DeadRetry],
        unique_ttl: Duration,
    ) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut inv = scripts::DEAD_RETRY.prepare_invoke();
        inv.key(&keys.dead).key(&keys.pending);
        for item in items {
            let result = keys.result(&item.id);
            let lock = item.unique_key.as_deref().map(|u| keys.unique(u));
            inv.key(&result).key(lock.unwrap_or(result.clone()));
        }
        inv.key(&keys.stats);
        inv.arg(unique_ttl.as_secs().max(1));
        for item in items {
            inv.arg(&item.entry)
                .arg(&item.payload)
                .arg(&item.id)
                .arg(if item.unique_key.is_some() { "1" } else { "0" });
        }
        let mut c = self.conn().await?;
        inv.invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("dead.retry", e))
    }

    /// Removes dead jobs older than `older_than` (by Redis's clock), or all
    /// of them; returns how many.
    pub async fn dead_purge(&self, keys: &QueueKeys, older_than: Option<Duration>) -> Result<u64> {
        let age: i64 = older_than.map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as i64);
        let mut c = self.conn().await?;
        scripts::DEAD_PURGE
            .key(&keys.dead)
            .key(&keys.stats)
            .arg(age)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("dead.purge", e))
    }
}

/// Escapes the glob characters of Redis `MATCH` patterns.
pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\d"), "a\\*b\\?\\[c\\]\\\\d");
        assert_eq!(glob_escape("0190-ab"), "0190-ab");
        assert_eq!(glob_escape("toolq:{a*}:"), "toolq:{a\\*}:");
    }
}
