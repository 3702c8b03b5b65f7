//! Spreading a batch over a sharded queue's shards: chunk by chunk, each
//! batch starting one shard further than the last, so one producer's
//! single jobs go round the shards too; a job with a `unique_key` always
//! goes to its key's shard (`keys::unique_shard`), where its unique mark
//! lives. Jobs keep their order within a shard, not across shards.
//!
//! The layout is read from Redis at most once per [`SHARDS_TTL`] per queue,
//! so a changed shard count reaches a running producer within a second.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::queue::keys::unique_shard;
use crate::queue::{Broker, EnqueueItem, QueueError, Shards, SHARDS_TTL};

/// The layouts a producer read lately, and where its next batch starts.
#[derive(Default)]
pub struct ShardCache {
    read: Mutex<HashMap<String, (Shards, Instant)>>,
    next: AtomicU32,
}

impl ShardCache {
    /// `queue`'s layout, read again once the one held is [`SHARDS_TTL`] old.
    pub async fn layout(&self, broker: &Broker, queue: &str) -> Result<Shards, QueueError> {
        if let Some((s, at)) = self.lock().get(queue) {
            if at.elapsed() < SHARDS_TTL {
                return Ok(*s);
            }
        }
        let s = broker.shard_layout(queue).await?;
        self.lock().insert(queue.to_owned(), (s, Instant::now()));
        Ok(s)
    }

    /// The shard the next batch starts at.
    pub fn start(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Shards, Instant)>> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each item's shard among `count`: chunk `c` of `chunk` items goes to
/// shard `(start + c) % count`, a unique job to its key's shard.
pub fn assign(items: &[EnqueueItem], count: u32, start: u32, chunk: usize) -> Vec<u32> {
    let count = count.max(1);
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match &item.unique_key {
            Some(k) => unique_shard(k, count),
            None => ((start as usize + i / chunk.max(1)) % count as usize) as u32,
        })
        .collect()
}

/// Runs of consecutive items on the same shard, in input order, so a batch
/// is sent in order and a failure part-way names exactly what went in.
pub fn runs(shards: &[u32]) -> Vec<(u32, Range<usize>)> {
    let mut out: Vec<(u32, Range<usize>)> = Vec::new();
    for (i, &s) in shards.iter().enumerate() {
        match out.last_mut() {
            Some((last, r)) if *last == s => r.end = i + 1,
            _ => out.push((s, i..i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize, unique_every: usize) -> Vec<EnqueueItem> {
        (0..n)
            .map(|i| EnqueueItem {
                id: format!("j{i}"),
                payload: "{}".into(),
                run_at: None,
                unique_key: (unique_every > 0 && i % unique_every == 0).then(|| format!("u{i}")),
            })
            .collect()
    }

    #[test]
    fn chunks_go_round_the_shards() {
        let s = assign(&items(10, 0), 3, 1, 2);
        assert_eq!(s, [1, 1, 2, 2, 0, 0, 1, 1, 2, 2]);
        assert_eq!(runs(&s)[..2], [(1, 0..2), (2, 2..4)]);
        assert_eq!(assign(&items(4, 0), 1, 7, 2), [0, 0, 0, 0]);
    }

    #[test]
    fn a_unique_job_goes_to_its_key_s_shard_whatever_the_batch() {
        let batch = items(9, 3);
        for start in 0..4 {
            let s = assign(&batch, 4, start, 2);
            assert_eq!(s[3], unique_shard("u3", 4));
            assert_eq!(s[6], unique_shard("u6", 4));
        }
        let s = assign(&batch, 4, 0, 2);
        let covered: usize = runs(&s).iter().map(|(_, r)| r.len()).sum();
        assert_eq!(covered, 9);
    }
}
