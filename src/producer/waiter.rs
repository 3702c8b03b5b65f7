//! Waiting for a batch: the worker pushes each finished job's id onto the
//! batch's notification list (in the same script that writes the result),
//! so the waiter blocks on that one list, takes ids in bulk and reads their
//! results with one `MGET` per bulk; it never polls result keys. On a
//! sharded queue each shard has its own list (in its own slot): the waiter
//! blocks on the one shard still owed jobs, or, when several are, on each
//! in turn for at most [`BLOCK_SHARED`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::RedisConn;
use futures::Stream;

use crate::job::JobResult;
use crate::queue::{Broker, QueueKeys};

use super::blockers::Blockers;
use super::{Producer, ProducerError, Result, Submitted};

/// Most ids taken from the notification list per round trip.
const POP_MAX: usize = 1000;
/// Longest single block on the list; the deadline is checked in between.
const BLOCK_MAX: Duration = Duration::from_secs(2);
/// Shortest block: `BLPOP` reads a zero timeout as "forever".
const BLOCK_MIN: Duration = Duration::from_millis(10);
/// Longest block on one shard's list while other shards still owe jobs:
/// the most a finished job waits to be seen because the waiter was
/// blocked on another shard.
const BLOCK_SHARED: Duration = Duration::from_millis(20);
/// Consecutive connection failures tolerated (with a pause) before giving up.
const RETRIES: u32 = 5;

/// A job of the batch that finished (succeeded or dead).
#[derive(Debug, Clone)]
pub struct Finished {
    /// Position of the job in the submitted batch.
    pub index: usize,
    pub id: String,
    /// The result document, if one was stored (not with `result_ttl_s: 0`)
    /// and it parsed.
    pub result: Option<JobResult>,
    /// The result exactly as stored.
    pub raw: Option<String>,
}

impl Finished {
    pub fn succeeded(&self) -> bool {
        self.result
            .as_ref()
            .is_some_and(|r| r.status == "succeeded")
    }
}

/// Yields a batch's jobs as they finish, in completion order.
pub struct BatchWaiter {
    broker: Arc<Broker>,
    /// The keys of each shard of the queue, by shard.
    keys: Vec<QueueKeys>,
    batch: String,
    /// Jobs not finished yet: id → (index in the batch, shard).
    waiting: HashMap<String, (usize, u32)>,
    /// Jobs not finished yet per shard.
    owed: Vec<usize>,
    /// The shard list read last, to take turns.
    turn: usize,
    ready: VecDeque<Finished>,
    /// Ids taken from one shard's list whose results are not read yet (kept
    /// across a failed `MGET`, since the list will not give them again).
    unread: Vec<String>,
    unread_shard: u32,
    conn: Option<RedisConn>,
    /// `conn` came from an earlier waiter and has not answered this one
    /// yet: if it fails, it had gone stale, which is no outage.
    reused: bool,
    /// A command is in flight on `conn` (a future dropped mid-wait leaves
    /// it so): the connection is not kept for the next waiter.
    busy: bool,
    blockers: Arc<Blockers>,
    started: Instant,
    deadline: Option<Instant>,
    ended: bool,
}

impl Producer {
    /// Waits for the jobs of an awaitable batch (duplicates skipped at
    /// enqueue are not waited for). `timeout` bounds the whole wait.
    pub fn await_batch(
        &self,
        submitted: &Submitted,
        timeout: Option<Duration>,
    ) -> Result<BatchWaiter> {
        let batch = submitted.batch.clone().ok_or(ProducerError::NotAwaitable)?;
        let shard = |i: usize| submitted.shards.get(i).copied().unwrap_or(0);
        let mut waiting: HashMap<String, (usize, u32)> = submitted
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), (i, shard(i))))
            .collect();
        for &d in &submitted.duplicates {
            waiting.remove(&submitted.ids[d]);
        }
        let shards = submitted.shards.iter().copied().max().unwrap_or(0) + 1;
        let mut owed = vec![0; shards as usize];
        for (_, s) in waiting.values() {
            owed[*s as usize] += 1;
        }
        let started = Instant::now();
        Ok(BatchWaiter {
            broker: self.broker.clone(),
            keys: (0..shards)
                .map(|k| QueueKeys::shard(&submitted.queue, k))
                .collect(),
            batch,
            waiting,
            owed,
            turn: 0,
            ready: VecDeque::new(),
            unread: Vec::new(),
            unread_shard: 0,
            conn: None,
            reused: false,
            busy: false,
            blockers: self.blockers.clone(),
            started,
            deadline: timeout.map(|t| started + t),
            ended: false,
        })
    }
}

impl BatchWaiter {
    /// The next job to finish; `None` once all have. When the deadline
    /// passes, yields [`ProducerError::BatchTimeout`] once, then `None`.
    pub async fn next(&mut self) -> Option<Result<Finished>> {
        let mut failures = 0;
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Some(Ok(f));
            }
            if self.ended {
                return None;
            }
            if self.waiting.is_empty() {
                self.ended = true;
                // Best effort: the lists expire on their own within a day.
                for keys in &self.keys {
                    let _ = self.broker.forget_batch(keys, &self.batch).await;
                }
                return None;
            }
            let mut block = BLOCK_MAX;
            if let Some(deadline) = self.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.ended = true;
                    return Some(Err(ProducerError::BatchTimeout {
                        unfinished: self.waiting.len(),
                        waited: self.started.elapsed(),
                    }));
                }
                block = left.clamp(BLOCK_MIN, BLOCK_MAX);
            }
            match self.pull(block).await {
                Ok(()) => failures = 0,
                Err(e) if e.is_unavailable() && std::mem::take(&mut self.reused) => {
                    // A kept connection Redis closed meanwhile: a new one, at
                    // once, and none of the others kept with it.
                    self.conn = None;
                    self.blockers.forget();
                }
                Err(e) if e.is_unavailable() && failures < RETRIES => {
                    failures += 1;
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(200) * failures).await;
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    /// The waiter as a stream of finished jobs.
    pub fn into_stream(self) -> impl Stream<Item = Result<Finished>> + Send {
        futures::stream::unfold(self, |mut w| async move { w.next().await.map(|r| (r, w)) })
    }

    /// Jobs still expected.
    pub fn unfinished(&self) -> usize {
        self.waiting.len() + self.ready.len()
    }

    /// Ids of jobs not finished yet, in batch order.
    pub fn unfinished_ids(&self) -> Vec<String> {
        let mut left: Vec<(&usize, &String)> =
            self.waiting.iter().map(|(id, (i, _))| (i, id)).collect();
        left.sort();
        left.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Takes finished ids from one shard's list (blocking up to `block`,
    /// or [`BLOCK_SHARED`] when other shards owe jobs too) and reads their
    /// results.
    async fn pull(&mut self, block: Duration) -> crate::queue::Result<()> {
        if self.unread.is_empty() {
            let owing: Vec<u32> = (0..self.owed.len() as u32)
                .filter(|&s| self.owed[s as usize] > 0)
                .collect();
            let Some(&shard) = owing.get(self.turn % owing.len().max(1)) else {
                return Ok(());
            };
            self.turn = self.turn.wrapping_add(1);
            let block = match owing.len() {
                1 => block,
                _ => block.min(BLOCK_SHARED),
            };
            let conn = match &mut self.conn {
                Some(c) => c,
                None => {
                    let (conn, reused) = self.blockers.take(&self.broker, BLOCK_MAX).await?;
                    self.reused = reused;
                    self.conn.insert(conn)
                }
            };
            self.busy = true;
            let ids = self
                .broker
                .pop_finished(
                    conn,
                    &self.keys[shard as usize],
                    &self.batch,
                    POP_MAX,
                    block,
                )
                .await?;
            self.busy = false;
            self.reused = false;
            // A job finishing twice (dead, then retried by an operator) is
            // reported once.
            let waiting = &self.waiting;
            self.unread
                .extend(ids.into_iter().filter(|id| waiting.contains_key(id)));
            self.unread_shard = shard;
            if self.unread.is_empty() {
                return Ok(());
            }
        }
        let keys = &self.keys[self.unread_shard as usize];
        let texts = self.broker.results(keys, &self.unread).await?;
        let mine = std::mem::take(&mut self.unread);
        for (id, raw) in mine.into_iter().zip(texts) {
            let Some((index, shard)) = self.waiting.remove(&id) else {
                continue;
            };
            self.owed[shard as usize] -= 1;
            let raw = raw.map(|t| crate::job::expand_result(&id, &t));
            let result = raw.as_deref().and_then(|t| serde_json::from_str(t).ok());
            self.ready.push_back(Finished {
                index,
                id,
                result,
                raw,
            });
        }
        Ok(())
    }
}

impl Drop for BatchWaiter {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|_| !self.busy) {
            self.blockers.give_back(conn);
        }
    }
}
