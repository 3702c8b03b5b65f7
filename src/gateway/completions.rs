//! Waiting for many jobs at once with one connection per queue.
//!
//! Every job the gateway waits for carries this process's batch id, so the
//! worker pushes its id onto one notification list per queue when it
//! finishes (the same signal `toolq submit --wait` uses). One listener per
//! queue blocks on that list, reads the finished jobs' results in bulk and
//! hands each to the request waiting for it. Nothing polls; a request that
//! is no longer waiting simply has no entry, and its id is dropped. On a
//! sharded queue each shard has its own list: one listener per shard, all
//! handing to the queue's waiters; the queue's layout is read again every
//! [`SHARDS_TTL`] so a shard added later gets its listener.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::queue::{Broker, QueueKeys, SHARDS_TTL};

/// Most ids taken per round trip.
const POP_MAX: usize = 1000;
/// Longest block on the list, so shutdown is noticed.
const BLOCK: Duration = Duration::from_secs(1);

type Waiters = HashMap<String, oneshot::Sender<Option<String>>>;

pub struct Completions {
    broker: Arc<Broker>,
    /// This process's batch id: `gateway-<uuid>`.
    batch: String,
    /// queue → (job id → the request waiting for it).
    queues: Mutex<HashMap<String, Arc<Mutex<Waiters>>>>,
    stop: CancellationToken,
}

/// A registered wait; dropping it unregisters.
pub struct Waiting {
    pub receiver: oneshot::Receiver<Option<String>>,
    waiters: Arc<Mutex<Waiters>>,
    id: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(&self.id);
        }
    }
}

impl Completions {
    pub fn new(broker: Arc<Broker>, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Completions {
            broker,
            batch: format!("gateway-{}", uuid::Uuid::new_v4().simple()),
            queues: Mutex::new(HashMap::new()),
            stop,
        })
    }

    /// The batch id to put on jobs that [`Completions::register`] waits for.
    pub fn batch(&self) -> &str {
        &self.batch
    }

    /// Registers interest in `id` before its job is enqueued, so a job that
    /// finishes at once is not missed. The receiver gets the raw result
    /// (`None` if none was stored).
    pub fn register(self: &Arc<Self>, queue: &str, id: &str) -> Waiting {
        let waiters = self.listener(queue);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = waiters.lock() {
            w.insert(id.to_owned(), tx);
        }
        Waiting {
            receiver: rx,
            waiters,
            id: id.to_owned(),
        }
    }

    /// The waiters of `queue`, starting its listener on first use.
    fn listener(self: &Arc<Self>, queue: &str) -> Arc<Mutex<Waiters>> {
        let mut queues = match self.queues.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(w) = queues.get(queue) {
            return w.clone();
        }
        let waiters = Arc::new(Mutex::new(Waiters::new()));
        queues.insert(queue.to_owned(), waiters.clone());
        let this = self.clone();
        let w = waiters.clone();
        let queue = queue.to_owned();
        tokio::spawn(async move { this.watch_shards(queue, w).await });
        waiters
    }

    /// Starts a listener on each shard of `queue` there is, shard 0 at
    /// once, the others as the layout names them.
    async fn watch_shards(self: Arc<Self>, queue: String, waiters: Arc<Mutex<Waiters>>) {
        let mut listening = 0;
        while !self.stop.is_cancelled() {
            let shards = match self.broker.shard_layout(&queue).await {
                Ok(s) => s.max,
                Err(_) => listening.max(1),
            };
            for k in listening..shards {
                let this = self.clone();
                let (keys, w) = (QueueKeys::shard(&queue, k), waiters.clone());
                tokio::spawn(async move { this.listen(keys, w).await });
            }
            listening = listening.max(shards);
            tokio::select! {
                () = tokio::time::sleep(SHARDS_TTL) => {}
                () = self.stop.cancelled() => {}
            }
        }
    }

    async fn listen(self: Arc<Self>, keys: QueueKeys, waiters: Arc<Mutex<Waiters>>) {
        let mut conn = None;
        let mut failures: u32 = 0;
        while !self.stop.is_cancelled() {
            let c = match &mut conn {
                Some(c) => c,
                None => match self.broker.dedicated(BLOCK * 2).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        failures += 1;
                        self.pause("connect", &e, failures).await;
                        continue;
                    }
                },
            };
            let popped = tokio::select! {
                r = self.broker.pop_finished(c, &keys, &self.batch, POP_MAX, BLOCK) => r,
                () = self.stop.cancelled() => break,
            };
            let ids = match popped {
                Ok(ids) => ids,
                Err(e) => {
                    conn = None;
                    failures += 1;
                    self.pause("wait", &e, failures).await;
                    continue;
                }
            };
            failures = 0;
            let wanted: Vec<String> = match waiters.lock() {
                Ok(w) => ids.into_iter().filter(|id| w.contains_key(id)).collect(),
                Err(_) => continue,
            };
            if wanted.is_empty() {
                continue;
            }
            // On a failed read the waiters keep waiting: their deadline
            // re-reads the result key once before answering 202.
            let Ok(texts) = self.broker.results(&keys, &wanted).await else {
                continue;
            };
            if let Ok(mut w) = waiters.lock() {
                for (id, text) in wanted.into_iter().zip(texts) {
                    if let Some(tx) = w.remove(&id) {
                        let _ = tx.send(text.map(|t| crate::job::expand_result(&id, &t)));
                    }
                }
            }
        }
        // Best effort: the list expires on its own within a day.
        let _ = self.broker.forget_batch(&keys, &self.batch).await;
    }

    async fn pause(&self, what: &str, e: &crate::queue::QueueError, failures: u32) {
        if failures == 1 {
            tracing::warn!(error = %e, "gateway.completions: {what} failed; retrying");
        }
        let delay = Duration::from_millis(100 * u64::from(failures.min(20)));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.stop.cancelled() => {}
        }
    }
}
