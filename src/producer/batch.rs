//! Enqueueing a batch: ids assigned here (UUIDv7) so results can be
//! awaited, jobs sent in chunks of many values per `LPUSH` with several
//! chunks per round trip, unique jobs through a script that skips
//! duplicates, and a pending cap honoured by waiting (see `backpressure`).
//! A batch with a callback job is armed before its first job goes in and
//! sealed with its count after the last (`queue::callback`). On a sharded
//! queue the jobs are spread over its shards (`spread`); a batch with a
//! callback goes to shard 0, where its callback is counted.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use crate::config::DEFAULT_UNIQUE_TTL_S;
use crate::job::{self, FollowUp, Job};
use crate::queue::{Broker, EnqueueItem, Fate, QueueKeys};

use super::partial::{stopped, Sent};
use super::{backpressure, spread, Producer, ProducerError, Result, ValidJob};

/// Jobs per `LPUSH` (or per script call).
pub(super) const CHUNK: usize = 1000;
/// Chunks pipelined per round trip: 10,000 jobs, a few MB at most.
const CHUNKS_PER_TRIP: usize = 10;

/// How a batch is enqueued.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Tags the jobs with a batch id so [`Producer::await_batch`] can wait
    /// for them; costs the worker one list push per job.
    pub awaitable: bool,
    /// Longest a `unique_key` stays held if its job is lost.
    pub unique_ttl: Duration,
    /// Wait while the queue holds this many pending jobs.
    pub max_pending: Option<u64>,
    /// A job enqueued once, when the batch's last job is settled (README
    /// "Follow-up jobs"); tags the jobs with a batch id like `awaitable`.
    pub callback: Option<FollowUp>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            awaitable: false,
            unique_ttl: Duration::from_secs(DEFAULT_UNIQUE_TTL_S),
            max_pending: None,
            callback: None,
        }
    }
}

/// What was enqueued.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub queue: String,
    /// The batch id when the jobs can be awaited.
    pub batch: Option<String>,
    /// Every job's id, in input order (duplicates included).
    pub ids: Vec<String>,
    /// Indexes into `ids` of jobs skipped because their `unique_key` was
    /// held by a job still pending, delayed or running.
    pub duplicates: Vec<usize>,
    /// The batch callback's id (`<batch>:callback`), when it has one.
    pub callback: Option<String>,
    /// Each job's shard, in input order (all 0 on a queue never sharded):
    /// where its result and its batch notification are.
    pub shards: Vec<u32>,
}

impl Submitted {
    /// How many jobs went on the queue.
    pub fn enqueued(&self) -> usize {
        self.ids.len() - self.duplicates.len()
    }
}

impl Producer {
    /// Enqueues jobs built in Rust; see [`Producer::submit`]. Serialises
    /// each job once, straight from the struct (the fast path: no detour
    /// through a JSON map).
    pub async fn enqueue_batch(
        &self,
        queue: &str,
        jobs: &[Job],
        options: &BatchOptions,
    ) -> Result<Submitted> {
        let batch = batch_id(options)?;
        let now = job::now_ms();
        let mut items = Vec::with_capacity(jobs.len());
        let mut follow_ups = BTreeSet::new();
        for job in jobs {
            super::valid::check(job).map_err(ProducerError::InvalidJob)?;
            follow_ups.extend(job.follow_up_queues().into_iter().map(str::to_owned));
            let mut job = job.clone();
            let id = job
                .id
                .get_or_insert_with(|| uuid::Uuid::now_v7().to_string())
                .clone();
            job.enqueued_at.get_or_insert(now);
            if batch.is_some() {
                job.batch.clone_from(&batch);
            }
            let payload = serde_json::to_string(&job)
                .map_err(|e| ProducerError::InvalidJob(e.to_string()))?;
            items.push(EnqueueItem {
                id,
                payload,
                run_at: job.run_at,
                unique_key: job.unique_key.take(),
            });
        }
        self.submit_items(queue, items, follow_ups, batch, options, &mut |_| {})
            .await
    }

    /// Enqueues validated jobs in input order. `progress` is told how many
    /// have been handled so far after each round trip.
    pub async fn submit(
        &self,
        queue: &str,
        jobs: Vec<ValidJob>,
        options: &BatchOptions,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Submitted> {
        let batch = batch_id(options)?;
        let now = job::now_ms();
        let follow_ups = jobs.iter().flat_map(ValidJob::follow_up_queues).collect();
        let items: Vec<EnqueueItem> = jobs
            .into_iter()
            .map(|j| j.into_item(batch.as_deref(), now))
            .collect();
        self.submit_items(queue, items, follow_ups, batch, options, progress)
            .await
    }

    /// Enqueues `items` on `queue`, after registering `follow_ups`, the
    /// other queues their follow-ups (or the batch callback) go to.
    async fn submit_items(
        &self,
        queue: &str,
        items: Vec<EnqueueItem>,
        mut follow_ups: BTreeSet<String>,
        batch: Option<String>,
        options: &BatchOptions,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Submitted> {
        // Registered here, before any job that could send work there goes
        // in: the scripts that push follow-ups touch only one queue's keys
        // (one hash tag), and the registry is a key of its own. The queue
        // itself is registered with its jobs.
        if let Some(t) = &options.callback {
            follow_ups.insert(t.queue.clone().unwrap_or_else(|| queue.to_owned()));
            follow_ups.extend(t.queues().into_iter().map(str::to_owned));
        }
        follow_ups.remove(queue);
        if !follow_ups.is_empty() {
            let names: Vec<&str> = follow_ups.iter().map(String::as_str).collect();
            self.broker.register_queues(&names).await?;
        }
        let layout = self.shards.layout(&self.broker, queue).await?;
        let start = self.shards.start();
        let shards = match (&options.callback, layout.count) {
            (_, 1) => vec![0; items.len()],
            // The callback counts its batch's outcomes in one shard's hash:
            // shard 0's, the slot of the queue's own keys on a cluster.
            (Some(_), _) => {
                if items.iter().any(|i| i.unique_key.is_some()) {
                    return Err(ProducerError::InvalidJob(format!(
                        "queue {queue:?} is sharded: a batch with a callback goes to one shard, so its jobs cannot carry a unique_key (each goes to its key's shard); submit them without the callback, or without unique_key"
                    )));
                }
                vec![0; items.len()]
            }
            (None, count) => spread::assign(&items, count, start, CHUNK),
        };
        let callback = match (&options.callback, &batch) {
            (Some(t), Some(b)) => {
                let keys = QueueKeys::shard(queue, shards.first().copied().unwrap_or(0));
                let to = t.queue.as_deref().unwrap_or(queue);
                let parts = t.batch_parts(b);
                self.broker.arm_batch_callback(&keys, b, to, &parts).await?;
                Some((b.as_str(), keys))
            }
            _ => None,
        };
        let mut duplicates = Vec::new();
        for (shard, range) in spread::runs(&shards) {
            let keys = QueueKeys::shard(queue, shard);
            let run = ShardRun {
                broker: &self.broker,
                keys: &keys,
                items: &items,
                range,
                duplicates: &mut duplicates,
                progress: &mut *progress,
            };
            match options.max_pending {
                Some(cap) => backpressure::enqueue(run, cap, options.unique_ttl).await?,
                None => pipelined(run, options.unique_ttl).await?,
            }
        }
        // Sealed only when every job went in: a batch stopped part-way
        // (the error says which jobs are on the queue) fires no callback.
        let callback = match callback {
            Some((b, keys)) => {
                let enqueued = items.len() - duplicates.len();
                self.broker.seal_batch(&keys, b, enqueued).await?;
                Some(format!("{b}:callback"))
            }
            None => None,
        };
        Ok(Submitted {
            queue: queue.to_owned(),
            batch,
            ids: items.into_iter().map(|i| i.id).collect(),
            duplicates,
            callback,
            shards,
        })
    }
}

/// A fresh batch id when the jobs are awaited or have a callback (whose
/// template is checked here, before anything is sent).
fn batch_id(options: &BatchOptions) -> Result<Option<String>> {
    if let Some(t) = &options.callback {
        t.check(1).map_err(|e| {
            ProducerError::InvalidJob(format!("the batch callback is not a valid job: {e}"))
        })?;
    }
    Ok((options.awaitable || options.callback.is_some()).then(|| uuid::Uuid::now_v7().to_string()))
}

/// One shard's part of a batch: `items[range]`, all bound for `keys`'
/// shard; the indexes of duplicates skipped go to `duplicates`, and
/// `progress` hears how many of `items` went in so far.
pub(super) struct ShardRun<'a> {
    pub broker: &'a Broker,
    pub keys: &'a QueueKeys,
    pub items: &'a [EnqueueItem],
    pub range: Range<usize>,
    pub duplicates: &'a mut Vec<usize>,
    pub progress: &'a mut (dyn FnMut(usize) + Send),
}

/// No cap: whole round trips of chunks of `items[range]` (all on one
/// shard), one after another, adding the duplicates' indexes to
/// `duplicates`. A trip Redis refused in part (out of memory) ends the
/// batch with exactly which jobs went in ([`super::PartlyEnqueued`]);
/// nothing after it is sent.
async fn pipelined(run: ShardRun<'_>, unique_ttl: Duration) -> Result<()> {
    let ShardRun {
        broker,
        keys,
        items,
        range,
        duplicates,
        progress,
    } = run;
    let mut done = range.start;
    for trip in items[range].chunks(CHUNK * CHUNKS_PER_TRIP) {
        let chunks: Vec<&[EnqueueItem]> = trip.chunks(CHUNK).collect();
        let landed = match broker.enqueue_chunks(keys, &chunks, unique_ttl).await {
            Ok(landed) => landed,
            Err(e) => {
                let sent = Sent::Unknown(trip.len());
                return Err(stopped(items, done, duplicates, sent, e));
            }
        };
        if let Some(e) = landed.refusal {
            let sent = Sent::Fates(&landed.fates);
            return Err(stopped(items, done, duplicates, sent, e));
        }
        duplicates.extend(
            (0..trip.len())
                .filter(|&i| landed.fates[i] == Fate::Duplicate)
                .map(|i| done + i),
        );
        done += trip.len();
        progress(done);
    }
    Ok(())
}
