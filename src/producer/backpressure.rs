//! Back-pressure: with a pending cap, each chunk goes through a script that
//! enqueues only what fits under the cap, atomically (so several producers
//! together still respect it); when the queue is full the producer waits,
//! watching the queue's length, until workers make room.

use std::time::Duration;

use crate::queue::{Broker, QueueError, QueueKeys};

use super::batch::{ShardRun, CHUNK};
use super::partial::{stopped, Sent};
use super::Result;

/// First pause when the queue is full: short, to refill promptly.
const PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause, when workers drain the queue slowly.
const PAUSE_MAX: Duration = Duration::from_millis(250);

/// Enqueues `run`'s jobs keeping its shard's `pending` under `cap`.
pub(super) async fn enqueue(run: ShardRun<'_>, cap: u64, unique_ttl: Duration) -> Result<()> {
    let ShardRun {
        broker,
        keys,
        items,
        range,
        duplicates,
        progress,
    } = run;
    let cap = cap.max(1);
    broker.register_queues(&[&keys.name]).await?;
    let mut done = range.start;
    while done < range.end {
        let chunk = &items[done..range.end.min(done + CHUNK)];
        // One script call: Redis takes the chunk whole or refuses it whole
        // (out of memory); a lost reply leaves the chunk in doubt.
        let out = match broker.enqueue_capped(keys, chunk, cap, unique_ttl).await {
            Ok(out) => out,
            Err(e) if e.is_unavailable() => {
                let sent = Sent::Unknown(chunk.len());
                return Err(stopped(items, done, duplicates, sent, e));
            }
            Err(e) => return Err(stopped(items, done, duplicates, Sent::Fates(&[]), e)),
        };
        duplicates.extend(out.duplicates.iter().map(|i| done + i));
        done += out.taken;
        progress(done);
        if out.taken < chunk.len() {
            if let Err(e) = wait_for_room(broker, keys, cap).await {
                return Err(stopped(items, done, duplicates, Sent::Fates(&[]), e));
            }
        }
    }
    Ok(())
}

/// Returns once `pending` holds fewer than `cap` jobs. Polls the length
/// (one cheap `LLEN`), not the jobs, backing off while nothing moves.
async fn wait_for_room(broker: &Broker, keys: &QueueKeys, cap: u64) -> Result<(), QueueError> {
    let mut pause = PAUSE_MIN;
    while broker.pending_len(keys).await? >= cap {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(PAUSE_MAX);
    }
    Ok(())
}
