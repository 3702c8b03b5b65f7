//! The queue API: every Redis operation the worker and the producer perform.
//! Hot paths (fetch, ack) take many jobs per round trip.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::{Connection, Pool};
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use super::connection::RedisTarget;
use super::keys::QueueKeys;
use super::scripts;
use super::{is_connection_error, QueueError, Result};

/// Values per `LPUSH` when enqueueing in bulk.
const ENQUEUE_CHUNK: usize = 1000;

/// A finished job (succeeded, or failed with a result to record).
#[derive(Debug, Clone)]
pub struct AckItem {
    pub seq: u64,
    pub id: String,
    pub result_ttl_s: u64,
    pub result: String,
    pub succeeded: bool,
    pub batch: Option<String>,
    /// The job's unique key, whose lock is released with the ack.
    pub unique_key: Option<String>,
}

/// A failed attempt to run again later.
#[derive(Debug, Clone)]
pub struct RetryItem {
    pub seq: u64,
    pub id: String,
    pub delay_ms: u64,
    pub payload: String,
    pub result_ttl_s: u64,
    pub result: String,
}

/// A job given up on.
#[derive(Debug, Clone)]
pub struct BuryItem {
    pub seq: u64,
    /// `None` when the payload was not a job with an id.
    pub id: Option<String>,
    pub dead_entry_prefix: String,
    pub result_ttl_s: u64,
    pub result: String,
    pub batch: Option<String>,
    /// The job's unique key, whose lock is released with the burial.
    pub unique_key: Option<String>,
}

/// Jobs per state of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depths {
    pub pending: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
}

/// A handle on Redis shared by every task of a process.
pub struct Broker {
    target: RedisTarget,
    pool: Pool,
    /// One multiplexed connection checked out of the pool and kept: the pool
    /// pings on every checkout, which would double the hot path's round trips.
    hot: Mutex<Option<MultiplexedConnection>>,
}

impl Broker {
    pub fn new(target: RedisTarget) -> Result<Self> {
        let pool = target.pool()?;
        Ok(Broker {
            target,
            pool,
            hot: Mutex::new(None),
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// A connection from the pool, for calls off the hot path.
    pub async fn pooled(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|e| QueueError::Unavailable {
            op: "connect",
            message: e.to_string(),
        })
    }

    pub(super) async fn conn(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.hot.lock().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let conn = Connection::take(self.pooled().await?);
        if let Ok(mut g) = self.hot.lock() {
            *g = Some(conn.clone());
        }
        Ok(conn)
    }

    /// Maps an error and forgets a broken hot connection so the next call
    /// reconnects.
    pub(super) fn fail(&self, op: &'static str, e: redis::RedisError) -> QueueError {
        if is_connection_error(&e) {
            if let Ok(mut g) = self.hot.lock() {
                *g = None;
            }
        }
        QueueError::redis(op, e)
    }

    /// A connection for blocking commands (see [`RedisTarget::dedicated`]).
    pub async fn dedicated(&self, block: Duration) -> Result<MultiplexedConnection> {
        self.target.dedicated(block).await
    }

    pub async fn ping(&self) -> Result<Duration> {
        let mut c = self.conn().await?;
        let start = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("ping", e))?;
        Ok(start.elapsed())
    }

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

    /// Moves up to `max` jobs to this worker's active hash; the i-th payload
    /// returned is held under sequence number `first_seq + i`. A job already
    /// recovered `solo_at` times comes back alone (see `fetch.lua`).
    pub async fn fetch(
        &self,
        keys: &QueueKeys,
        worker: &str,
        max: usize,
        first_seq: u64,
        solo_at: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let mut c = self.conn().await?;
        scripts::FETCH
            .key(&keys.pending)
            .key(keys.active(worker))
            .key(keys.landing(worker))
            .key(&keys.workers)
            .arg(max)
            .arg(first_seq)
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
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = scripts::ACK.prepare_invoke();
        inv.key(keys.active(worker)).key(&keys.stats);
        for item in items {
            inv.key(keys.result(&item.id));
        }
        let mut batches: Vec<&str> = Vec::new();
        for item in items {
            if let Some(b) = &item.batch {
                if !batches.contains(&b.as_str()) {
                    batches.push(b);
                }
            }
        }
        for b in &batches {
            inv.key(keys.batch(b));
        }
        // Unique locks go last, so jobs without one cost nothing here.
        for item in items {
            if let Some(u) = &item.unique_key {
                inv.key(keys.unique(u));
            }
        }
        inv.arg(items.len());
        let mut meta = String::new();
        for item in items {
            let notify = item
                .batch
                .as_deref()
                .and_then(|b| batches.iter().position(|x| *x == b))
                .map_or(0, |i| i + 1);
            inv.arg(item.seq);
            // See ack.lua: the plain TTL is the fast path.
            if item.succeeded && notify == 0 && item.unique_key.is_none() {
                inv.arg(item.result_ttl_s);
            } else {
                use std::fmt::Write;
                meta.clear();
                let s = if item.succeeded { 1 } else { 0 };
                let _ = write!(meta, "{}|{s}|{notify}|{}", item.result_ttl_s, item.id);
                inv.arg(meta.as_str());
            }
            inv.arg(&item.result);
        }
        for (i, item) in items.iter().enumerate() {
            if item.unique_key.is_some() {
                inv.arg(i + 1);
            }
        }
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

    /// Registers (`register`) or refreshes a heartbeat. `Ok(false)` means this
    /// worker had been declared dead and its jobs were recovered.
    pub async fn heartbeat(&self, keys: &QueueKeys, worker: &str, register: bool) -> Result<bool> {
        let mut c = self.conn().await?;
        let r: i64 = scripts::HEARTBEAT
            .key(&keys.workers)
            .arg(worker)
            .arg(if register { "register" } else { "beat" })
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("heartbeat", e))?;
        Ok(r >= 0)
    }

    /// Stores a worker's registration document, expiring after `ttl`.
    pub async fn set_worker_info(&self, worker: &str, info: &str, ttl: Duration) -> Result<()> {
        let mut c = self.conn().await?;
        c.set_ex::<_, _, ()>(super::keys::worker_info(worker), info, ttl.as_secs().max(1))
            .await
            .map_err(|e| self.fail("register", e))
    }

    /// Removes a worker's registration from every queue it served.
    pub async fn deregister(&self, queues: &[QueueKeys], worker: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        for keys in queues {
            pipe.zrem(&keys.workers, worker).ignore();
        }
        pipe.del(super::keys::worker_info(worker)).ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.fail("deregister", e))
    }

    /// Workers of a queue whose heartbeat is older than `timeout`.
    pub async fn stale_workers(
        &self,
        keys: &QueueKeys,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut c = self.conn().await?;
        scripts::STALE_WORKERS
            .key(&keys.workers)
            .arg(timeout.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))
    }

    /// Moves a dead worker's jobs back to the front of pending (or buries
    /// those recovered more than `max_recoveries` times). Returns how many
    /// were recovered and the payloads buried (the caller writes their
    /// results), or `None` when the worker turned out alive.
    pub async fn recover(
        &self,
        keys: &QueueKeys,
        dead_worker: &str,
        timeout: Duration,
        max_recoveries: u32,
        dead_max_jobs: u64,
    ) -> Result<Option<(u64, Vec<String>)>> {
        let mut c = self.conn().await?;
        let (recovered, buried): (i64, Vec<String>) = scripts::RECOVER
            .key(&keys.workers)
            .key(keys.active(dead_worker))
            .key(keys.landing(dead_worker))
            .key(&keys.pending)
            .key(&keys.dead)
            .key(&keys.stats)
            .arg(dead_worker)
            .arg(timeout.as_millis() as u64)
            .arg(max_recoveries)
            .arg(dead_max_jobs)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))?;
        if recovered < 0 {
            return Ok(None);
        }
        Ok(Some((recovered as u64, buried)))
    }

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

    /// Puts back this worker's unfinished jobs (all of them when `seqs` is
    /// empty) at the front of pending, without counting a recovery.
    pub async fn requeue(&self, keys: &QueueKeys, worker: &str, seqs: &[u64]) -> Result<u64> {
        let mut c = self.conn().await?;
        scripts::REQUEUE
            .key(keys.active(worker))
            .key(keys.landing(worker))
            .key(&keys.pending)
            .arg(seqs)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("requeue", e))
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
                pipe.hlen(keys.active(w)).llen(keys.landing(w));
            }
            let counts: Vec<u64> = pipe
                .query_async(&mut c)
                .await
                .map_err(|e| self.fail("depths", e))?;
            active = counts.iter().sum();
        }
        Ok(Depths {
            pending,
            active,
            delayed,
            dead,
        })
    }

    /// Workers whose heartbeat is within `timeout`, by Redis's clock.
    pub async fn live_workers(&self, keys: &QueueKeys, timeout: Duration) -> Result<Vec<String>> {
        let now = self.time_ms().await?;
        let since = now.saturating_sub(timeout.as_millis() as u64);
        let mut c = self.conn().await?;
        c.zrangebyscore(&keys.workers, since, "+inf")
            .await
            .map_err(|e| self.fail("workers", e))
    }

    /// A worker's registration document, if it is still there.
    pub async fn worker_info(&self, worker: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(super::keys::worker_info(worker))
            .await
            .map_err(|e| self.fail("workers", e))
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

    /// A field of `INFO`, e.g. `used_memory` from section `memory`.
    pub async fn info_field(&self, section: &str, field: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("info", e))?;
        let prefix = format!("{field}:");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_owned()))
    }

    /// Runs an arbitrary command on a pooled connection (CLI helpers, tests).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        cmd.query_async(&mut c).await.map_err(|e| self.fail(op, e))
    }

    /// Runs a pipeline on the hot connection.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        pipe.query_async(&mut c).await.map_err(|e| self.fail(op, e))
    }
}
