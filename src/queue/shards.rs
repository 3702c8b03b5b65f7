//! A queue's shard layout (`toolq:{Q}:shards`, a hash in shard 0's slot):
//! how many shards producers write to (`count`), how many workers serve
//! (`serve`: more than `count` while shards retired by lowering it drain),
//! and the most there ever were (`max`: where a job may still be found by
//! id). A queue without the hash has one shard, shard 0, whose keys are the
//! queue's own (`toolq:{Q}:…`).
//!
//! Read with one `HMGET` per queue; workers read it with their heartbeat and
//! producers keep it for [`crate::queue::SHARDS_TTL`], so a change reaches
//! them within about a second.

use std::time::Duration;

use super::broker::Broker;
use super::keys::QueueKeys;
use super::Result;

/// Most shards a queue may have.
pub const MAX_SHARDS: u32 = 256;

/// How long a producer uses a layout it read before reading it again: the
/// bound on how late it follows a change of the shard count.
pub const SHARDS_TTL: Duration = Duration::from_secs(1);

/// One queue's shard layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shards {
    /// Shards producers spread new jobs over: 0..count.
    pub count: u32,
    /// Shards workers serve: 0..serve (≥ count).
    pub serve: u32,
    /// Shards a job may be found in by id: 0..max (≥ serve).
    pub max: u32,
}

impl Default for Shards {
    fn default() -> Self {
        Shards::one()
    }
}

impl Shards {
    /// A queue never sharded.
    pub fn one() -> Self {
        Shards {
            count: 1,
            serve: 1,
            max: 1,
        }
    }

    /// From the hash's three fields, each absent or unreadable counted as
    /// the smallest sound value, so a damaged layout still serves shard 0.
    fn from_fields(count: Option<u32>, serve: Option<u32>, max: Option<u32>) -> Self {
        let clamp = |n: u32| n.clamp(1, MAX_SHARDS);
        let count = clamp(count.unwrap_or(1));
        let serve = clamp(serve.unwrap_or(count).max(count));
        let max = clamp(max.unwrap_or(serve).max(serve));
        Shards { count, serve, max }
    }

    /// The keys of every shard workers serve.
    pub fn served(&self, queue: &str) -> Vec<QueueKeys> {
        (0..self.serve)
            .map(|k| QueueKeys::shard(queue, k))
            .collect()
    }

    /// The keys of every shard a job may be in.
    pub fn all(&self, queue: &str) -> Vec<QueueKeys> {
        (0..self.max).map(|k| QueueKeys::shard(queue, k)).collect()
    }
}

impl Broker {
    /// The layout of each queue, in one round trip.
    pub async fn shard_layouts(&self, queues: &[&str]) -> Result<Vec<Shards>> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in queues {
            pipe.cmd("HMGET")
                .arg(QueueKeys::new(q).shards())
                .arg("count")
                .arg("serve")
                .arg("max");
        }
        let rows: Vec<(Option<u32>, Option<u32>, Option<u32>)> =
            self.query_pipe("shards", &pipe).await?;
        Ok(rows
            .into_iter()
            .map(|(c, s, m)| Shards::from_fields(c, s, m))
            .collect())
    }

    /// One queue's layout.
    pub async fn shard_layout(&self, queue: &str) -> Result<Shards> {
        Ok(self
            .shard_layouts(&[queue])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Writes a queue's layout (one `HSET`: readers see all of it or none)
    /// and wakes its workers to read it now.
    pub async fn set_shard_layout(&self, queue: &str, shards: Shards) -> Result<()> {
        let key = QueueKeys::new(queue).shards();
        self.query::<i64>(
            "shards",
            redis::cmd("HSET")
                .arg(&key)
                .arg("count")
                .arg(shards.count)
                .arg("serve")
                .arg(shards.serve)
                .arg("max")
                .arg(shards.max),
        )
        .await?;
        self.wake(super::Signal::Flags, &key).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_damaged_layout_is_read_soundly() {
        assert_eq!(Shards::from_fields(None, None, None), Shards::one());
        let s = Shards::from_fields(Some(4), None, None);
        assert_eq!((s.count, s.serve, s.max), (4, 4, 4));
        let s = Shards::from_fields(Some(2), Some(1), Some(0));
        assert_eq!((s.count, s.serve, s.max), (2, 2, 2));
        let s = Shards::from_fields(Some(0), Some(100_000), None);
        assert_eq!((s.count, s.serve, s.max), (1, MAX_SHARDS, MAX_SHARDS));
    }
}
