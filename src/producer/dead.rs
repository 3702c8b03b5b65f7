//! What died: list a queue's dead jobs, put them back on `pending`
//! (one, or all), and purge them, on every shard.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::job;
use crate::queue::{DeadRetry, QueueKeys};

use super::{Producer, ProducerError, Result};

/// Dead entries read per round trip by `dead_list` and `dead_retry_all`.
const DEAD_PAGE: usize = 500;

/// A dead-set entry: the stored JSON and what a listing shows of it.
#[derive(Debug, Clone)]
pub struct DeadEntry {
    pub raw: String,
    pub id: Option<String>,
    pub tool: Option<String>,
    pub attempt: Option<u64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub died_at: Option<u64>,
}

impl DeadEntry {
    fn parse(raw: String) -> DeadEntry {
        let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().map(str::to_owned);
        DeadEntry {
            // A payload kept only in part has its id, if it was readable,
            // beside it (`truncated.id`).
            id: text(&v["job"]["id"]).or_else(|| text(&v["truncated"]["id"])),
            tool: text(&v["job"]["tool"]),
            attempt: v["job"]["attempt"].as_u64(),
            error_kind: text(&v["error"]["kind"]),
            error_message: text(&v["error"]["message"]),
            died_at: v["died_at"].as_u64(),
            raw,
        }
    }
}

/// A page of a queue's dead jobs, newest first, and how many it holds.
#[derive(Debug, Clone)]
pub struct DeadList {
    /// Dead jobs in the queue when the listing began.
    pub total: u64,
    pub entries: Vec<DeadEntry>,
}

/// What `dead_retry_all` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryAll {
    pub retried: u64,
    /// Entries whose job was not a JSON object (a raw payload that was never
    /// a job): left in the dead set, since running them again cannot help.
    pub not_retryable: u64,
}

impl Producer {
    /// The newest `limit` dead jobs of every shard (all of them when
    /// `None`), newest first, with how many the queue holds.
    pub async fn dead_list(&self, queue: &str, limit: Option<usize>) -> Result<DeadList> {
        let mut all = DeadList {
            total: 0,
            entries: Vec::new(),
        };
        for keys in self.shard_layout(queue).await?.all(queue) {
            let one = self.dead_list_shard(&keys, limit).await?;
            all.total += one.total;
            all.entries.extend(one.entries);
        }
        all.entries
            .sort_by_key(|e| std::cmp::Reverse(e.died_at.unwrap_or(0)));
        if let Some(l) = limit {
            all.entries.truncate(l);
        }
        Ok(all)
    }

    /// Puts the dead job `id` back on `pending` (of its shard) with its
    /// attempts reset; false when no dead job has that id.
    pub async fn dead_retry(&self, queue: &str, id: &str, unique_ttl: Duration) -> Result<bool> {
        for keys in self.shard_layout(queue).await?.all(queue) {
            if self.dead_retry_shard(&keys, id, unique_ttl).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Puts every dead job of the queue back on `pending`, shard by shard.
    pub async fn dead_retry_all(&self, queue: &str, unique_ttl: Duration) -> Result<RetryAll> {
        let mut out = RetryAll::default();
        for keys in self.shard_layout(queue).await?.all(queue) {
            let one = self.dead_retry_all_shard(&keys, unique_ttl).await?;
            out.retried += one.retried;
            out.not_retryable += one.not_retryable;
        }
        Ok(out)
    }

    /// Removes dead jobs older than `older_than`, or all, from every
    /// shard; returns how many.
    pub async fn dead_purge(&self, queue: &str, older_than: Option<Duration>) -> Result<u64> {
        let mut purged = 0;
        for keys in self.shard_layout(queue).await?.all(queue) {
            purged += self.broker.dead_purge(&keys, older_than).await?;
        }
        Ok(purged)
    }

    /// The newest `limit` dead jobs of one shard (all of them when
    /// `None`), newest first, read a page at a time, with how many it holds.
    async fn dead_list_shard(&self, keys: &QueueKeys, limit: Option<usize>) -> Result<DeadList> {
        let keys = keys.clone();
        let total = self.broker.depths(&keys).await?.dead;
        // Jobs dying meanwhile push older ones down a rank: read no more
        // than were there when we counted.
        let wanted = limit.map_or(total as usize, |l| l.min(total as usize));
        let mut entries = Vec::with_capacity(wanted);
        while entries.len() < wanted {
            let count = (wanted - entries.len()).min(DEAD_PAGE);
            let page = self
                .broker
                .dead_page(&keys, entries.len(), count, true)
                .await?;
            let short = page.len() < count;
            entries.extend(page.into_iter().map(DeadEntry::parse));
            if short {
                break;
            }
        }
        Ok(DeadList { total, entries })
    }

    /// Puts the dead job `id` of one shard back on its `pending` with its
    /// attempts reset; false when no dead job there has that id. Refused
    /// when its payload was kept only in part (over a size limit): it
    /// cannot be rebuilt.
    async fn dead_retry_shard(
        &self,
        keys: &QueueKeys,
        id: &str,
        unique_ttl: Duration,
    ) -> Result<bool> {
        let keys = keys.clone();
        // The id as it appears inside the stored JSON (escaped).
        let needle = Value::String(id.to_owned()).to_string();
        let needle = &needle[1..needle.len() - 1];
        let newest = self
            .broker
            .dead_containing(&keys, needle)
            .await?
            .into_iter()
            .map(DeadEntry::parse)
            .filter(|e| e.id.as_deref() == Some(id))
            .max_by_key(|e| e.died_at);
        let Some(entry) = newest else {
            return Ok(false);
        };
        if let Some(bytes) = truncated_bytes(&entry.raw) {
            return Err(ProducerError::Refused(format!(
                "dead job {id} cannot be retried: its payload was {bytes} bytes, over a size \
                 limit, and the dead set keeps only its first bytes, size and SHA-1; \
                 enqueue it again from its source"
            )));
        }
        let Some(item) = fresh_run(entry.raw) else {
            return Ok(false);
        };
        Ok(self.broker.dead_retry(&keys, &[item], unique_ttl).await? == 1)
    }

    /// Puts every dead job of one shard back on its `pending` (those that
    /// died before the call: jobs dying meanwhile are left for the next one).
    async fn dead_retry_all_shard(
        &self,
        keys: &QueueKeys,
        unique_ttl: Duration,
    ) -> Result<RetryAll> {
        let keys = keys.clone();
        let mut left = self.broker.depths(&keys).await?.dead as usize;
        let mut out = RetryAll::default();
        while left > 0 {
            let offset = out.not_retryable as usize;
            let page = self
                .broker
                .dead_page(&keys, offset, left.min(DEAD_PAGE), false)
                .await?;
            if page.is_empty() {
                break;
            }
            left = left.saturating_sub(page.len());
            let mut items = Vec::with_capacity(page.len());
            for raw in page {
                match fresh_run(raw) {
                    Some(item) => items.push(item),
                    None => out.not_retryable += 1,
                }
            }
            out.retried += self.broker.dead_retry(&keys, &items, unique_ttl).await?;
        }
        Ok(out)
    }
}

/// The size of the payload a dead entry keeps only in part, if it does.
fn truncated_bytes(entry: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(entry).ok()?;
    v.get("truncated")?.get("bytes")?.as_u64()
}

/// The job of a dead entry, rewritten to run afresh: attempts and
/// recoveries reset, no batch tag, enqueued now. `None` when the entry holds no job object.
fn fresh_run(entry: String) -> Option<DeadRetry> {
    let v: Value = serde_json::from_str(&entry).ok()?;
    let mut job: Map<String, Value> = v.get("job")?.as_object()?.clone();
    let id = match job.get("id").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    job.insert("id".into(), Value::String(id.clone()));
    job.insert("attempt".into(), Value::from(0));
    job.remove("recoveries");
    // Whoever awaited the old batch has been told the job died.
    job.remove("batch");
    job.insert("enqueued_at".into(), Value::from(job::now_ms()));
    let unique_key = job
        .get("unique_key")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(DeadRetry {
        entry,
        payload: Value::Object(job).to_string(),
        id,
        unique_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_run_resets_attempts_and_keeps_the_rest() {
        let entry = r#"{"job":{"recoveries":2,"id":"j1","tool":"echo","args":{"n":1},"attempt":4,"max_attempts":5,"batch":"b","unique_key":"u","x":true},"error":{"kind":"k","message":"m"},"died_at":7}"#;
        let item = fresh_run(entry.into()).unwrap();
        let job: Value = serde_json::from_str(&item.payload).unwrap();
        assert_eq!(job["attempt"], 0);
        assert!(job.get("recoveries").is_none());
        assert!(job.get("batch").is_none());
        assert_eq!(job["x"], true);
        assert_eq!(job["args"]["n"], 1);
        assert_eq!(item.id, "j1");
        assert_eq!(item.unique_key.as_deref(), Some("u"));
        assert_eq!(item.entry, entry);
    }

    #[test]
    fn a_raw_payload_cannot_run_again() {
        let entry =
            r#"{"job":"{not json","error":{"kind":"invalid_json","message":"m"},"died_at":7}"#;
        assert!(fresh_run(entry.into()).is_none());
        let listed = DeadEntry::parse(entry.into());
        assert_eq!(listed.error_kind.as_deref(), Some("invalid_json"));
        assert_eq!(listed.id, None);
    }
}
