//! Moving jobs through their states: enqueueing, scheduling, fetching,
//! settling (ack, retry, bury), deferring, promoting and requeueing. The hot
//! paths (fetch, ack) take many jobs per round trip.

use std::time::Duration;

use super::cluster::RedisConn;
use redis::{AsyncCommands, ScriptInvocation};

use super::broker::{AckItem, AckReply, Broker, BuryItem, DeferItem, RetryItem};
use super::durable::is_no_script;
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

/// Bytes of an oversized payload's tail its stand-in carries besides the
/// head: enough for the fields a producer writes after `args` in key order
/// (`batch`, `id`, `tool`, `unique_key`).
pub const OVERSIZED_TAIL_BYTES: usize = 4096;

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

    /// Adds a job to `delayed`, due at `due_ms` (unix ms), and wakes idle
    /// workers to look at the lane (best effort: see `wake.lua`).
    pub async fn schedule(&self, keys: &QueueKeys, payload: &str, due_ms: u64) -> Result<()> {
        let mut c = self.conn().await?;
        c.zadd::<_, _, _, ()>(&keys.delayed, payload, due_ms)
            .await
            .map_err(|e| self.fail("schedule", e))?;
        self.wake(super::wake::Signal::Delayed, &keys.delayed).await;
        Ok(())
    }

    /// Moves up to `max` jobs (at most [`BATCH_SLOTS`]) to this worker's
    /// active hash as one batch; the i-th payload returned is held in slot
    /// [`slot`]`(batch, i)`. `batch` must be a number this worker has not
    /// fetched under before. A job already recovered `solo_at` times comes
    /// back alone (see `fetch.lua`). A payload over `limits.max_bytes`
    /// comes back as an [`Oversized`](super::Oversized) stand-in.
    pub async fn fetch(
        &self,
        keys: &QueueKeys,
        worker: &str,
        max: usize,
        batch: u64,
        limits: FetchLimits,
    ) -> Result<Vec<Vec<u8>>> {
        let mut c = self.conn().await?;
        fetch_invocation(keys, worker, max, batch, limits, None)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fetch_error(e))
    }

    fn fetch_error(&self, e: redis::RedisError) -> QueueError {
        match e.code() {
            Some("NOTREGISTERED") => QueueError::NotRegistered,
            _ => self.fail("fetch", e),
        }
    }

    /// Blocks on a dedicated connection until pending holds a job, or
    /// `timeout` passes; returns whether one is there. It moves nothing:
    /// `BLMOVE` from pending to its own tail puts the job back where it was,
    /// so a job is never held by a wait that its worker might not live to
    /// see (Redis serves a blocked command even while the client is paused).
    pub async fn wait_for_job(
        &self,
        conn: &mut RedisConn,
        keys: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool> {
        let seen: Option<Vec<u8>> = redis::cmd("BLMOVE")
            .arg(&keys.pending)
            .arg(&keys.pending)
            .arg("RIGHT")
            .arg("RIGHT")
            .arg(timeout.as_secs_f64())
            .query_async(conn)
            .await
            .map_err(|e| QueueError::redis("wait", e))?;
        Ok(seen.is_some())
    }

    /// [`wait_for_job`](Self::wait_for_job) and, in the same round trip,
    /// a fetch of one job (batch `w.batch`) the moment it lands: Redis runs
    /// the commands that follow a blocked one as soon as it is served, so
    /// an idle worker's job starts a round trip sooner than a wake-up and
    /// then a fetch would let it. The fetch is sent long before it runs,
    /// maybe on behalf of a worker frozen or cut off since: it takes
    /// nothing when this worker's heartbeat is older than `w.max_beat_age`,
    /// nor once the worker is deregistered; either way the job stays in
    /// pending. A fetch whose reply this returns as an error took nothing;
    /// a connection that breaks may have lost the reply of one that ran.
    pub async fn wait_and_fetch(
        &self,
        conn: &mut RedisConn,
        keys: &QueueKeys,
        worker: &str,
        w: WaitingFetch,
    ) -> Result<Landing> {
        let fetch = fetch_invocation(keys, worker, 1, w.batch, w.limits, Some(w.max_beat_age));
        let timeout = w.block;
        let mut pipe = redis::pipe();
        pipe.cmd("BLMOVE")
            .arg(&keys.pending)
            .arg(&keys.pending)
            .arg("RIGHT")
            .arg("RIGHT")
            .arg(timeout.as_secs_f64())
            .invoke_script(&fetch)
            .llen(&keys.pending)
            .ignore_errors();
        type Replies = (
            redis::RedisResult<Option<Vec<u8>>>,
            redis::RedisResult<Vec<Vec<u8>>>,
            redis::RedisResult<u64>,
        );
        let (seen, fetched, left): Replies = pipe
            .query_async(conn)
            .await
            .map_err(|e| QueueError::redis("wait", e))?;
        let seen = seen.map_err(|e| QueueError::redis("wait", e))?;
        let fetched = match fetched {
            Err(e) if is_no_script(&e) => {
                // Loaded for the next wait; this one took nothing.
                fetch
                    .load_async(conn)
                    .await
                    .map_err(|e| QueueError::redis("wait", e))?;
                Ok(Vec::new())
            }
            other => other.map_err(|e| self.fetch_error(e)),
        };
        Ok(Landing {
            seen: seen.is_some(),
            fetched,
            more: left.unwrap_or(1) > 0,
        })
    }

    /// Settles succeeded jobs; the reply names, by index into `items`, those
    /// no longer ours and those a key of their own keeps from settling.
    pub async fn ack(&self, keys: &QueueKeys, worker: &str, items: &[AckItem]) -> Result<AckReply> {
        let mut reply = AckReply::default();
        for (n, chunk) in items.chunks(ACK_CHUNK).enumerate() {
            let offset = n * ACK_CHUNK;
            let (stale, unwritable) = self.ack_chunk(keys, worker, chunk).await?;
            reply.stale.extend(stale.into_iter().map(|i| i + offset));
            reply
                .unwritable
                .extend(unwritable.into_iter().map(|(i, why)| (i + offset, why)));
        }
        Ok(reply)
    }

    async fn ack_chunk(
        &self,
        keys: &QueueKeys,
        worker: &str,
        items: &[AckItem],
    ) -> Result<(Vec<usize>, Vec<(usize, String)>)> {
        let items = self.push_foreign_follow_ups(keys, items).await?;
        let items = items.as_ref();
        let batches = distinct_batches(items);
        let mut inv = scripts::ACK.prepare_invoke();
        ack_keys(&mut inv, keys, worker, items, &batches);
        ack_args(&mut inv, items, &batches);
        let (stale, unwritable): (Vec<usize>, Vec<(usize, String)>) =
            self.invoke_durable("ack", &inv).await?;
        let base = |i: usize| i.saturating_sub(1);
        Ok((
            stale.into_iter().map(base).collect(),
            unwritable.into_iter().map(|(i, w)| (base(i), w)).collect(),
        ))
    }

    /// Sends a failed job to `delayed`; false when it was no longer ours.
    pub async fn retry(&self, keys: &QueueKeys, worker: &str, item: &RetryItem) -> Result<bool> {
        let mut inv = scripts::RETRY.prepare_invoke();
        inv.key(keys.active(worker))
            .key(&keys.delayed)
            .key(keys.result(&item.id))
            .key(&keys.stats)
            .arg(item.seq)
            .arg(item.delay_ms)
            .arg(&item.payload)
            .arg(item.result_ttl_s)
            .arg(&item.result);
        let done: i64 = self.invoke_durable("retry", &inv).await?;
        Ok(done == 1)
    }

    /// Buries a job in `dead`, trimmed to `caps`. `None` when it was no
    /// longer ours; otherwise why a key of the job's own was skipped, if one
    /// was (empty when none), and how many entries the caps dropped.
    pub async fn bury(
        &self,
        keys: &QueueKeys,
        worker: &str,
        item: &BuryItem,
        caps: DeadCaps,
    ) -> Result<Option<(String, u64)>> {
        let item = self.push_foreign_follow_up(keys, item).await?;
        let item = item.as_ref();
        let mut inv = scripts::BURY.prepare_invoke();
        inv.key(keys.active(worker))
            .key(&keys.dead)
            .key(keys.result(item.id.as_deref().unwrap_or("_")))
            .key(&keys.stats);
        // The optional keys, each named by an ARGV flag: the notification
        // list and the batch callback hash, the follow-up's pending list,
        // the unique lock.
        if let Some(b) = &item.batch {
            inv.key(keys.batch(b)).key(keys.batch_callback(b));
        }
        if let Some(f) = &item.follow_up {
            inv.key(keys.follow_up_pending(&f.queue));
        }
        if let Some(u) = &item.unique_key {
            inv.key(keys.unique(u));
        }
        let ttl = if item.id.is_some() {
            item.result_ttl_s
        } else {
            0
        };
        // An empty dead entry tells the script the job was cancelled.
        let entry = match item.cancelled {
            true => "",
            false => item.dead_entry_prefix.as_str(),
        };
        inv.arg(item.seq)
            .arg(entry)
            .arg(ttl)
            .arg(&item.result)
            .arg(caps.max_jobs)
            .arg(caps.max_age.as_millis() as u64)
            .arg(item.id.as_deref().unwrap_or(""))
            .arg(caps.max_bytes)
            .arg(u8::from(item.batch.is_some()))
            .arg(u8::from(item.unique_key.is_some()))
            .arg(item.follow_up.as_ref().map_or("", |f| f.payload.as_str()));
        let (done, skipped, trimmed): (i64, String, u64) =
            self.invoke_durable("bury", &inv).await?;
        Ok((done == 1).then_some((skipped, trimmed)))
    }

    /// Parks a job in `delayed` unless it is due by Redis's clock. Returns
    /// `Some(true)` when parked, `Some(false)` when due now, `None` when stale.
    pub async fn defer(
        &self,
        keys: &QueueKeys,
        worker: &str,
        item: &DeferItem,
    ) -> Result<Option<bool>> {
        let mut c = self.conn().await?;
        let r: i64 = scripts::DEFER
            .key(keys.active(worker))
            .key(&keys.delayed)
            .arg(item.seq)
            .arg(item.due_ms)
            .arg(&item.payload)
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

    /// Puts back, at the front of pending and without counting a recovery,
    /// the held jobs of `what`; returns how many went back.
    pub async fn requeue(&self, keys: &QueueKeys, worker: &str, what: Requeue<'_>) -> Result<u64> {
        let mut inv = scripts::REQUEUE.prepare_invoke();
        inv.key(keys.active(worker))
            .key(&keys.pending)
            .key(&keys.workers);
        match what {
            Requeue::Stop => inv.arg("stop").arg(worker),
            Requeue::Slots(slots) => inv.arg("slots").arg(slots),
            Requeue::Batches(batches) => inv.arg("batches").arg(batches),
        };
        let mut c = self.conn().await?;
        inv.invoke_async(&mut c)
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

/// How far the dead set may grow: entries older than `max_age`, beyond
/// `max_jobs`, or (oldest first) beyond `max_bytes` in total are dropped.
#[derive(Debug, Clone, Copy)]
pub struct DeadCaps {
    pub max_jobs: u64,
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// A fetch that takes jobs refreshes the worker's heartbeat on the queue
/// when it is older than this (see `fetch.lua`): a busy queue's heartbeat
/// is fresher than that, so under load the fetch writes nothing more.
const FENCE_FRESH_MS: u64 = 500;

/// A fetch sent behind a blocking wait ([`Broker::wait_and_fetch`]).
#[derive(Debug, Clone, Copy)]
pub struct WaitingFetch {
    /// The batch number the job is held under.
    pub batch: u64,
    pub limits: FetchLimits,
    /// The oldest heartbeat at which the fetch may still take a job.
    pub max_beat_age: Duration,
    /// How long the wait blocks.
    pub block: Duration,
}

/// What [`Broker::wait_and_fetch`] saw and took.
#[derive(Debug)]
pub struct Landing {
    /// A job was in pending when the wait ended.
    pub seen: bool,
    /// The payloads the fetch took (at most one), or why it took none.
    pub fetched: Result<Vec<Vec<u8>>>,
    /// Pending still held jobs after the fetch.
    pub more: bool,
}

/// The fetch script's call (see `fetch.lua`): with `max_beat_age`, it
/// takes nothing for a worker whose heartbeat on the queue is older.
fn fetch_invocation<'a>(
    keys: &QueueKeys,
    worker: &str,
    max: usize,
    batch: u64,
    limits: FetchLimits,
    max_beat_age: Option<Duration>,
) -> ScriptInvocation<'a> {
    let mut inv = scripts::FETCH.prepare_invoke();
    inv.key(&keys.pending)
        .key(keys.active(worker))
        .key(&keys.workers)
        .arg(max.min(BATCH_SLOTS as usize))
        .arg(batch)
        .arg(worker)
        .arg(limits.solo_at)
        .arg(limits.max_bytes)
        .arg(limits.head_bytes)
        .arg(OVERSIZED_TAIL_BYTES)
        // A fetch that may run long after it was sent refreshes nothing.
        .arg(max_beat_age.map_or(FENCE_FRESH_MS, |_| 0))
        .arg(max_beat_age.map_or(0, |a| a.as_millis().max(1) as u64));
    inv
}

/// What a fetch hands over as it is and what it keeps back.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Recoveries at which a job is a suspect and comes back alone.
    pub solo_at: u32,
    /// Longest payload handed over; a longer one comes back as a stand-in
    /// (`Oversized`), so its bytes never leave Redis.
    pub max_bytes: usize,
    /// Bytes of an oversized payload's head its stand-in keeps.
    pub head_bytes: usize,
}

/// Which held jobs [`Broker::requeue`] puts back.
#[derive(Debug, Clone, Copy)]
pub enum Requeue<'a> {
    /// All of them, deregistering the worker from the queue in the same
    /// step (a graceful stop).
    Stop,
    /// The jobs in these slots.
    Slots(&'a [u64]),
    /// Every job still held of these fetched batches (fetches whose reply
    /// was lost).
    Batches(&'a [u64]),
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

/// `ack.lua`'s KEYS: active, stats, one result per item, the batches'
/// notification lists, their callback hashes, the follow-ups' pending
/// lists, then the unique locks.
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
    for b in batches {
        inv.key(keys.batch_callback(b));
    }
    for item in items {
        if let Some(f) = &item.follow_up {
            inv.key(keys.follow_up_pending(&f.queue));
        }
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
/// with their meta, the follow-ups, then the (1-based) items holding a
/// unique lock.
fn ack_args(inv: &mut ScriptInvocation<'_>, items: &[AckItem], batches: &[&str]) {
    let notify = |item: &AckItem| {
        item.batch
            .as_deref()
            .and_then(|b| batches.iter().position(|x| *x == b))
            .map_or(0, |i| i + 1)
    };
    let plain_candidate = |item: &AckItem| item.unique_key.is_none() && item.follow_up.is_none();
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
        let j = notify(item);
        let _ = write!(meta, "{}|{j}|{}", item.result_ttl_s, item.id);
        inv.arg(i + 1).arg(meta.as_str());
    }
    // Follow-up pending lists follow the batches' two keys in KEYS (1-based).
    let mut key = 2 + items.len() + 2 * batches.len();
    inv.arg(items.iter().filter(|i| i.follow_up.is_some()).count());
    for (i, item) in items.iter().enumerate() {
        if let Some(f) = &item.follow_up {
            key += 1;
            inv.arg(i + 1).arg(key).arg(&f.payload);
        }
    }
    inv.arg(batches.len());
    for (i, item) in items.iter().enumerate() {
        if item.unique_key.is_some() {
            inv.arg(i + 1);
        }
    }
}
