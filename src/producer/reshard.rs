//! Changing a queue's shard count (`toolq queue shards Q N`).
//!
//! Raising it takes effect at once: producers spread over the new shards
//! within [`SHARDS_TTL`], workers serve them within a heartbeat interval.
//! Lowering it is a procedure, because the retired shards still hold jobs:
//! 1. the first call lowers `count` (producers stop writing to the retired
//!    shards within [`SHARDS_TTL`]); workers keep serving them (`serve`) so
//!    their pending, delayed and running jobs drain;
//! 2. a later call (the same command again) finds the retired shards empty
//!    (no pending, delayed, running or dead job) and lowers `serve`: workers
//!    stop serving them. Until then it says what they still hold. Dead jobs
//!    there are retried (`toolq dead retry --all`, they drain like the rest)
//!    or purged first.
//!
//! Results and progress in retired shards stay readable by id until they
//! expire (`max` keeps every shard there ever was in the lookups).

use std::time::Duration;

use crate::queue::{QueueKeys, Shards, MAX_SHARDS, SHARDS_TTL};

use super::{Producer, ProducerError, Result};

/// What a change of the shard count did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshard {
    pub before: Shards,
    pub after: Shards,
    /// Retired shards not empty yet: (shard, pending, delayed, running,
    /// dead). Empty once the change is complete.
    pub draining: Vec<(u32, u64, u64, u64, u64)>,
}

impl Reshard {
    /// Whether producers and workers both use exactly the shards asked for.
    pub fn complete(&self) -> bool {
        self.after.count == self.after.serve
    }
}

impl Producer {
    /// Sets `queue`'s shard count to `n` (see the module's procedure for
    /// lowering it).
    pub async fn set_shards(&self, queue: &str, n: u32) -> Result<Reshard> {
        if !(1..=MAX_SHARDS).contains(&n) {
            return Err(ProducerError::InvalidJob(format!(
                "a queue has 1 to {MAX_SHARDS} shards, not {n}"
            )));
        }
        let broker = self.broker();
        broker.register_queues(&[queue]).await?;
        let before = broker.shard_layout(queue).await?;
        let mut after = Shards {
            count: n,
            serve: before.serve.max(n),
            max: before.max.max(n),
        };
        if after != before {
            broker.set_shard_layout(queue, after).await?;
        }
        if n >= before.serve {
            return Ok(Reshard {
                before,
                after,
                draining: Vec::new(),
            });
        }
        if before.count > n {
            // Producers that read the old count a moment ago may still be
            // writing to the retired shards: let that pass before looking.
            tokio::time::sleep(SHARDS_TTL + Duration::from_millis(200)).await;
        }
        // Two passes: `depths` reads the states one after another, so a job
        // moving between them (a retry: running, then delayed) can be
        // missed by one; it cannot move back past the next.
        let mut draining = Vec::new();
        for _ in 0..2 {
            for k in n..after.serve {
                let keys = QueueKeys::shard(queue, k);
                let d = broker.depths(&keys).await?;
                if d.pending + d.delayed + d.active + d.dead > 0 {
                    draining.push((k, d.pending, d.delayed, d.active, d.dead));
                }
            }
            if !draining.is_empty() {
                break;
            }
        }
        if draining.is_empty() {
            after.serve = n;
            broker.set_shard_layout(queue, after).await?;
        }
        Ok(Reshard {
            before,
            after,
            draining,
        })
    }
}
