//! How deep is each queue and who is working on it: the operator's
//! overview, a sharded queue's shards added up.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::queue::QueueKeys;

use super::{Producer, Result};

/// One queue's depths, live workers and running totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueStats {
    pub queue: String,
    pub pending: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
    /// The dead set's size in bytes, as the burials keep count of it (see
    /// `dead_max_bytes`); 0 before the first burial of this build.
    pub dead_bytes: u64,
    /// Dead entries dropped, oldest first, to keep the dead set within its
    /// count and byte caps (`dead_max_jobs`, `dead_max_bytes`).
    pub dead_trimmed: u64,
    /// An operator paused it: workers take no job from it.
    pub paused: bool,
    /// Workers whose heartbeat is recent.
    pub workers: Vec<WorkerEntry>,
    pub totals: Totals,
    /// The shard layout: shards producers write to (`count`) and workers
    /// serve (`serve`, more while retired shards drain).
    pub shard_count: u32,
    pub shards_served: u32,
    /// Per shard, when the queue is sharded (the fields above add them up).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStats>,
}

/// One shard's depths and totals.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: u32,
    pub pending: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
    pub totals: Totals,
}

/// A live worker and its registration document (host, pid, queues...).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerEntry {
    pub id: String,
    pub info: Option<Value>,
}

/// Running totals since the queue was created: attempts by how they ended,
/// in the status vocabulary of results.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub succeeded: u64,
    /// Attempts that failed with a retry scheduled.
    pub retrying: u64,
    pub dead: u64,
    /// Jobs an operator cancelled.
    pub cancelled: u64,
}

impl Producer {
    /// Every registered queue, with its numbers: O(queues + workers), never
    /// a walk of the keyspace.
    pub async fn stats(&self, heartbeat_timeout: Duration) -> Result<Vec<QueueStats>> {
        let mut out = Vec::new();
        for queue in self.broker.registered_queues().await? {
            out.push(self.queue_stats(&queue, heartbeat_timeout).await?);
        }
        Ok(out)
    }

    /// One queue's numbers; a sharded queue's depths and totals are its
    /// shards' added up, each shard also listed in `shards`.
    pub async fn queue_stats(
        &self,
        queue: &str,
        heartbeat_timeout: Duration,
    ) -> Result<QueueStats> {
        let layout = self.shard_layout(queue).await?;
        let keys = QueueKeys::new(queue);
        let mut workers = Vec::new();
        // Every worker of the queue registers on each shard it serves.
        for id in self.broker.live_workers(&keys, heartbeat_timeout).await? {
            let info = self.broker.worker_info(&id).await?;
            let info = info.and_then(|t| serde_json::from_str(&t).ok());
            workers.push(WorkerEntry { id, info });
        }
        let mut shards = Vec::new();
        let (mut dead_bytes, mut dead_trimmed) = (0, 0);
        for keys in layout.all(queue) {
            let depths = self.broker.depths(&keys).await?;
            let totals: HashMap<String, u64> = self.broker.totals(&keys).await?;
            let total = |k: &str| totals.get(k).copied().unwrap_or(0);
            dead_bytes += total("dead_bytes");
            dead_trimmed += total("dead_trimmed");
            shards.push(ShardStats {
                shard: keys.shard,
                pending: depths.pending,
                active: depths.active,
                delayed: depths.delayed,
                dead: depths.dead,
                totals: Totals {
                    // Workers before 0.2 counted under `processed` and `retried`.
                    succeeded: total("succeeded") + total("processed"),
                    retrying: total("retrying") + total("retried"),
                    dead: total("dead"),
                    cancelled: total("cancelled"),
                },
            });
        }
        let sum = |f: fn(&ShardStats) -> u64| shards.iter().map(f).sum::<u64>();
        Ok(QueueStats {
            queue: queue.to_owned(),
            pending: sum(|s| s.pending),
            active: sum(|s| s.active),
            delayed: sum(|s| s.delayed),
            dead: sum(|s| s.dead),
            dead_bytes,
            dead_trimmed,
            paused: self.is_paused(queue).await?,
            workers,
            totals: Totals {
                succeeded: sum(|s| s.totals.succeeded),
                retrying: sum(|s| s.totals.retrying),
                dead: sum(|s| s.totals.dead),
                cancelled: sum(|s| s.totals.cancelled),
            },
            shard_count: layout.count,
            shards_served: layout.serve,
            shards: if layout.max > 1 { shards } else { Vec::new() },
        })
    }
}
