//! Moving jobs through their states: enqueueing, scheduling, fetching,
//! settling (ack, retry, bury), deferring, promoting and requeueing. The hot
//! paths (fetch, ack) take many jobs per round trip.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, ScriptInvocation};

use super::broker::{AckItem, Broker, BuryItem, RetryItem};
use super::keys::QueueKeys;
use super::scripts;
use super::{QueueError, Result};

/// Values per `LPUSH` when enqueueing in bulk.
const ENQUEUE_CHUNK: usize = 1000;

/// Jobs per `ack.lua` call at most, whatever `ack_batch` says: a script
/// blocks Redis while it runs, and the packed slots name a job's batch by a
/// 16-bit position.
const ACK_CHUNK: usize = 1024;

/// Jobs a fetched batch can hold; a batch numbers its jobs' slots (see
/// `held.lua`, which has the same constant).
pub const BATCH_SLOTS: u64 = 1024;

/// The slot of the `index`-th job of fetched batch `batch`: how settling
/// scripts name a held job.
pub fn slot(batch: u64, index: usize) -> u64 {
    batch * BATCH_SLOTS + index as u64
}

impl Broker {
    /// Adds one job at the back of pending.
    pub async fn enqueue(&self, keys: &QueueKeys, payload: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.lpush::<_, _, ()>(&keys.pending, payload)
            .await
            .map_err(|e| self.fail("enqueue", e))
    }

    /// Adds many jobs, in order, with many values per `LPUSH` in one pipeline.
    pub async fn enqueue_many(&self, keys: &QueueKeys, payloads: &[String]) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for chunk in payloads.chunks(ENQUEUE_CHUNK) {
            pipe.lpush(&keys.pending, chunk).ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail("enqueue", e))
    }

    /// Adds a job to `delayed`, due at `due_ms` (unix ms).
    pub async fn schedule(&self, keys: &QueueKeys, payload: &str, due_ms: u64) -> Result<()> {
        let mut c = self.conn().await?;
        c.zadd::<_, _, _, ()>(&keys.delayed, payload, due_ms)
            .await
            .map_err(|e| self.fail("schedule", e))
    }

    /// Moves up to `max` jobs (at most [`BATCH_SLOTS`]) to this worker's
    /// active hash as one batch; the i-th payload returned is held in slot
    /// [`slot`]`(batch, i)`. `batch` must be a number this worker has not
    /// fetched under before. A job already recovered `solo_at` times comes
    /// back alone (see `fetch.lua`).
    pub async fn fetch(
        &self,
        keys: &QueueKeys,
        worker: &str,
        max: usize,
        batch: u64,
        solo_at: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let mut c = self.conn().await?;
        scripts::FETCH
            .key(&keys.pending)
            .key(keys.active(worker))
            .key(keys.landing(worker))
            .key(&keys.workers)
            .arg(max.min(BATCH_SLOTS as usize))
            .arg(batch)
            .arg(worker)
            .arg(solo_at)
            .invoke_async(&mut c)
            .await
            .map_err(|e| match e.code() {
                Some("NOTREGISTERED") => QueueError::NotRegistered,
                _ => self.fail("fetch", e),
            })
    }

    /// Blocks on a dedicated connection until a job arrives in pending (it is
    /// moved to this worker's landing list, where the next fetch adopts it)
    /// or `timeout` passes. Returns whether a job landed.
    pub async fn wait_for_job(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &QueueKeys,
        worker: &str,
        timeout: Duration,
    ) -> Result<bool> {
        let landed: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&keys.pending)
            .arg(keys.landing(worker))
            .arg("RIGHT")
            .arg("LEFT")
            .arg(timeout.as_secs_f64())
            .query_async(conn)
            .await
            .map_err(|e| QueueError::redis("wait", e))?;
        Ok(landed.is_some())
    }

    /// Settles finished jobs; returns the indexes (into `items`) of stale ones
    /// that were no longer ours and so were not written.
    pub async fn ack(
        &self,
        keys: &QueueKeys,
        worker: &str,
        items: &[AckItem],
    ) -> Result<Vec<usize>> {
        let mut stale = Vec::new();
        for (n, chunk) in items.chunks(ACK_CHUNK).enumerate() {
            let offset = n * ACK_CHUNK;
            let chunk_stale = self.ack_chunk(keys, worker, chunk).await?;
            stale.extend(chunk_stale.into_iter().map(|i| i + offset));
        }
        Ok(stale)
    }

    async fn ack_chunk(
        &self,
        keys: &QueueKeys,
        worker: &str,
        items: &[AckItem],
    ) -> Result<Vec<usize>> {
        let batches = distinct_batches(items);
        let mut inv = scripts::ACK.prepare_invoke();
        ack_keys(&mut inv, keys, worker, items, &batches);
        ack_args(&mut inv, items, &batches);
        let mut c = self.conn().await?;
        let stale: Vec<usize> = inv
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("ack", e))?;
        Ok(stale.into_iter().map(|i| i.saturating_sub(1)).collect())
    }

    /// Sends a failed job to `delayed`; false when it was no longer ours.
    pub async fn retry(&self, keys: &QueueKeys, worker: &str, item: &RetryItem) -> Result<bool> {
        let mut c = self.conn().await?;
        let done: i64 = scripts::RETRY
            .key(keys.active(worker))
            .key(&keys.delayed)
            .key(keys.result(&item.id))
            .key(&keys.stats)
            .arg(item.seq)
            .arg(item.delay_ms)
            .arg(&item.payload)
            .arg(item.result_ttl_s)
            .arg(&item.result)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("retry", e))?;
        Ok(done == 1)
    }

    /// Buries a job in `dead`, capped at `max_jobs` entries and `max_age`;
    /// false when it was no longer ours.
    pub async fn bury(
        &self,
        keys: &QueueKeys,
        worker: &str,
        item: &BuryItem,
        max_jobs: u64,
        max_age: Duration,
    ) -> Result<bool> {
        let mut inv = scripts::BURY.prepare_invoke();
        inv.key(keys.active(worker))
            .key(&keys.dead)
            .key(keys.result(item.id.as_deref().unwrap_or("_")))
            .key(&keys.stats);
        if let Some(b) = &item.batch {
            inv.key(keys.batch(b));
        }
        if let Some(u) = &item.unique_key {
            inv.key(keys.unique(u));
        }
        let ttl = if item.id.is_some() {
            item.result_ttl_s
        } else {
            0
        };
        inv.arg(item.seq)
            .arg(&item.dead_entry_prefix)
            .arg(ttl)
            .arg(&item.result)
            .arg(max_jobs)
            .arg(max_age.as_millis() as u64)
            .arg(item.id.as_deref().unwrap_or(""));
        if item.unique_key.is_some() {
            inv.arg("1");
        }
        let mut c = self.conn().await?;
        let done: i64 = inv
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("bury", e))?;
        Ok(done == 1)
    }

    /// Parks a job whose `run_at` is still ahead by Redis's clock. Returns
    /// `Some(true)` when parked, `Some(false)` when due now, `None` when stale.
    pub async fn defer(
        &self,
        keys: &QueueKeys,
        worker: &str,
        seq: u64,
        run_at_ms: u64,
        payload: &[u8],
    ) -> Result<Option<bool>> {
        let mut c = self.conn().await?;
        let r: i64 = scripts::DEFER
            .key(keys.active(worker))
            .key(&keys.delayed)
            .arg(seq)
            .arg(run_at_ms)
            .arg(payload)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("defer", e))?;
        Ok(match r {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        })
    }

    /// Moves due delayed jobs to pending. Returns how many moved and how long
    /// until the next one is due (`None` when none is left).
    pub async fn promote(&self, keys: &QueueKeys, limit: usize) -> Result<(u64, Option<Duration>)> {
        let mut c = self.conn().await?;
        let (moved, next): (u64, i64) = scripts::PROMOTE
            .key(&keys.delayed)
            .key(&keys.pending)
            .arg(limit)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("promote", e))?;
        let next = u64::try_from(next).ok().map(Duration::from_millis);
        Ok((moved, next))
    }

    /// Puts back this worker's unfinished jobs (all of them when `slots` is
    /// empty) at the front of pending, without counting a recovery.
    pub async fn requeue(&self, keys: &QueueKeys, worker: &str, slots: &[u64]) -> Result<u64> {
        let mut c = self.conn().await?;
        scripts::REQUEUE
            .key(keys.active(worker))
            .key(keys.landing(worker))
            .key(&keys.pending)
            .arg(slots)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("requeue", e))
    }

    /// The payloads a worker holds and has not settled, oldest first, then
    /// those waiting in its landing list.
    pub async fn held_jobs(&self, keys: &QueueKeys, worker: &str) -> Result<Vec<Vec<u8>>> {
        let mut c = self.conn().await?;
        scripts::HELD_JOBS
            .key(keys.active(worker))
            .key(keys.landing(worker))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("held", e))
    }
}

/// The batches named by `items`, each once, in first-seen order: a batch's
/// key index in `ack.lua` is its position here.
fn distinct_batches(items: &[AckItem]) -> Vec<&str> {
    let mut batches: Vec<&str> = Vec::new();
    for item in items {
        if let Some(b) = &item.batch {
            if !batches.contains(&b.as_str()) {
                batches.push(b);
            }
        }
    }
    batches
}

/// `ack.lua`'s KEYS: active, stats, one result per item, the batches, then
/// the unique locks.
fn ack_keys(
    inv: &mut ScriptInvocation<'_>,
    keys: &QueueKeys,
    worker: &str,
    items: &[AckItem],
    batches: &[&str],
) {
    inv.key(keys.active(worker)).key(&keys.stats);
    for item in items {
        inv.key(keys.result(&item.id));
    }
    for b in batches {
        inv.key(keys.batch(b));
    }
    // Unique locks go last, so jobs without one cost nothing here.
    for item in items {
        if let Some(u) = &item.unique_key {
            inv.key(keys.unique(u));
        }
    }
}

/// `ack.lua`'s ARGV: the count, the shared TTL, the fetched batches, the
/// packed slots, one result per item, then the items that are not plain
/// with their meta, then the (1-based) items holding a unique lock.
fn ack_args(inv: &mut ScriptInvocation<'_>, items: &[AckItem], batches: &[&str]) {
    let notify = |item: &AckItem| {
        item.batch
            .as_deref()
            .and_then(|b| batches.iter().position(|x| *x == b))
            .map_or(0, |i| i + 1)
    };
    let plain_candidate = |item: &AckItem| item.succeeded && item.unique_key.is_none();
    let shared_ttl = items
        .iter()
        .find(|i| plain_candidate(i) && notify(i) == 0)
        .map_or(0, |i| i.result_ttl_s);
    let plain = |item: &AckItem| {
        plain_candidate(item) && notify(item) == 0 && item.result_ttl_s == shared_ttl
    };
    inv.arg(items.len()).arg(shared_ttl);

    let mut fetched: Vec<u64> = Vec::new();
    let mut packed = Vec::with_capacity(items.len() * 4);
    for item in items {
        let batch = item.seq / BATCH_SLOTS;
        let pos = match fetched.iter().position(|b| *b == batch) {
            Some(p) => p,
            None => {
                fetched.push(batch);
                fetched.len() - 1
            }
        };
        // 1-based; at most ACK_CHUNK items, so at most that many batches.
        packed.extend_from_slice(&(pos as u16 + 1).to_be_bytes());
        packed.extend_from_slice(&((item.seq % BATCH_SLOTS) as u16).to_be_bytes());
    }
    inv.arg(fetched.len());
    for b in &fetched {
        inv.arg(b);
    }
    inv.arg(packed);
    for item in items {
        inv.arg(&item.result);
    }

    inv.arg(items.iter().filter(|i| !plain(i)).count());
    let mut meta = String::new();
    for (i, item) in items.iter().enumerate().filter(|(_, i)| !plain(i)) {
        use std::fmt::Write;
        meta.clear();
        let s = if item.succeeded { 1 } else { 0 };
        let j = notify(item);
        let _ = write!(meta, "{}|{s}|{j}|{}", item.result_ttl_s, item.id);
        inv.arg(i + 1).arg(meta.as_str());
    }
    for (i, item) in items.iter().enumerate() {
        if item.unique_key.is_some() {
            inv.arg(i + 1);
        }
    }
}
