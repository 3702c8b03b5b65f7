//! Waiting for a batch: the worker pushes each finished job's id onto the
//! batch's notification list (in the same script that writes the result),
//! so the waiter blocks on that one list, takes ids in bulk and reads their
//! results with one `MGET` per bulk; it never polls result keys.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::queue::RedisConn;
use futures::Stream;

use crate::job::JobResult;
use crate::queue::{Broker, QueueKeys};

use super::{Producer, ProducerError, Result, Submitted};

/// Most ids taken from the notification list per round trip.
const POP_MAX: usize = 1000;
/// Longest single block on the list; the deadline is checked in between.
const BLOCK_MAX: Duration = Duration::from_secs(2);
/// Shortest block: `BLPOP` reads a zero timeout as "forever".
const BLOCK_MIN: Duration = Duration::from_millis(10);
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
    keys: QueueKeys,
    batch: String,
    /// Jobs not finished yet: id → index in the batch.
    waiting: HashMap<String, usize>,
    ready: VecDeque<Finished>,
    /// Ids taken from the list whose results are not read yet (kept across
    /// a failed `MGET`, since the list will not give them again).
    unread: Vec<String>,
    conn: Option<RedisConn>,
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
        let mut waiting: HashMap<String, usize> = submitted
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        for &d in &submitted.duplicates {
            waiting.remove(&submitted.ids[d]);
        }
        let started = Instant::now();
        Ok(BatchWaiter {
            broker: self.broker.clone(),
            keys: QueueKeys::new(&submitted.queue),
            batch,
            waiting,
            ready: VecDeque::new(),
            unread: Vec::new(),
            conn: None,
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
                // Best effort: the list expires on its own within a day.
                let _ = self.broker.forget_batch(&self.keys, &self.batch).await;
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
        let mut left: Vec<(&usize, &String)> = self.waiting.iter().map(|(id, i)| (i, id)).collect();
        left.sort();
        left.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Takes finished ids (blocking up to `block`) and reads their results.
    async fn pull(&mut self, block: Duration) -> crate::queue::Result<()> {
        if self.unread.is_empty() {
            let conn = match &mut self.conn {
                Some(c) => c,
                None => self.conn.insert(self.broker.dedicated(BLOCK_MAX).await?),
            };
            let ids = self
                .broker
                .pop_finished(conn, &self.keys, &self.batch, POP_MAX, block)
                .await?;
            // A job finishing twice (dead, then retried by an operator) is
            // reported once.
            let waiting = &self.waiting;
            self.unread
                .extend(ids.into_iter().filter(|id| waiting.contains_key(id)));
            if self.unread.is_empty() {
                return Ok(());
            }
        }
        let texts = self.broker.results(&self.keys, &self.unread).await?;
        let mine = std::mem::take(&mut self.unread);
        for (id, raw) in mine.into_iter().zip(texts) {
            let Some(index) = self.waiting.remove(&id) else {
                continue;
            };
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
