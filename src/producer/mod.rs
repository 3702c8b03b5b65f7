//! The producer: puts jobs on queues, waits for their results, and answers
//! the operator's questions. The CLI's `enqueue`, `submit`, `stats`,
//! `result` and `dead` commands use exactly this API.
//!
//! - `valid`: [`ValidJob`], a checked job object (unknown fields kept).
//! - `lines`: reading JSON lines with `line N:` errors ([`read_lines`]).
//! - `batch`: enqueueing in pipelined chunks, unique jobs ([`BatchOptions`]).
//! - `partial`: a batch Redis took only part of ([`PartlyEnqueued`]).
//! - `backpressure`: waiting while a queue is at its pending cap.
//! - `spread`: which shard of a sharded queue each job goes to, and the
//!   layouts read lately.
//! - `waiter`: awaiting a batch through its notification list
//!   ([`BatchWaiter`], also a `Stream`).
//! - `stats`: each queue's depths, workers and totals, shard by shard.
//! - `dead`: a queue's dead jobs (list, retry, purge).
//! - `catalog`: the tools live workers serve, and checking jobs against it.
//! - `reshard`: changing a queue's shard count, and the procedure for
//!   lowering it.
//! - `lookup`: a job by id: where it is, its result and progress.
//! - `control`: cancelling a job; pausing, resuming and deleting a queue.
//! - `listing`: a queue's jobs in one state, filtered, a page at a time.

mod backpressure;
mod batch;
mod blockers;
mod catalog;
mod control;
mod dead;
mod lines;
mod listing;
mod lookup;
mod partial;
mod reshard;
mod spread;
mod stats;
mod valid;
mod waiter;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use batch::{BatchOptions, Submitted};
pub use catalog::{Catalog, CatalogTool};
pub use control::CancelOutcome;
pub use dead::{DeadEntry, DeadList, RetryAll};
pub use lines::{read_lines, Defaults, JobLines, LineError};
pub use listing::{JobFilter, JobPage, JobSummary, ListState};
pub use lookup::{JobState, JobView};
pub use partial::PartlyEnqueued;
pub use reshard::Reshard;
pub use stats::{QueueStats, ShardStats, Totals, WorkerEntry};
pub use valid::ValidJob;
pub use waiter::{BatchWaiter, Finished};

use crate::job::{Job, JobResult};
use crate::queue::{Broker, QueueError, QueueKeys, RedisTarget};

/// Poll interval of [`Producer::wait`], for jobs this producer did not tag.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("producer: invalid job: {0}")]
    InvalidJob(String),
    /// Redis took part of a batch and refused (e.g. out of memory) or lost
    /// the rest: which jobs went in, which did not.
    #[error(transparent)]
    PartlyEnqueued(Box<PartlyEnqueued>),
    /// A job with this `unique_key` is already pending, delayed or running.
    #[error(
        "producer: duplicate: a job with unique_key {unique_key:?} is already queued or running"
    )]
    Duplicate { unique_key: String },
    #[error("producer: no result for job {id} after {waited:?}")]
    Timeout { id: String, waited: Duration },
    #[error("producer: {unfinished} jobs of the batch did not finish within {waited:?}")]
    BatchTimeout { unfinished: usize, waited: Duration },
    #[error("producer: job {id} finished but stored no result (result_ttl_s = 0, or it expired)")]
    NoResult { id: String },
    #[error("producer: the batch was not enqueued with `awaitable`, so it cannot be awaited")]
    NotAwaitable,
    /// An operator action that would break something (e.g. deleting a
    /// queue live workers serve).
    #[error("{0}")]
    Refused(String),
    #[error("producer: result of job {id} is not valid JSON: {message}")]
    BadResult { id: String, message: String },
}

pub type Result<T, E = ProducerError> = std::result::Result<T, E>;

/// Enqueues jobs on behalf of a program or the CLI.
#[derive(Clone)]
pub struct Producer {
    broker: Arc<Broker>,
    /// Sharded queues' layouts, read at most once a second.
    shards: Arc<spread::ShardCache>,
    /// Connections for [`BatchWaiter`]s, kept between them.
    blockers: Arc<blockers::Blockers>,
}

impl Producer {
    pub fn connect(redis_url: &str, ca_file: Option<&std::path::Path>) -> Result<Self> {
        let broker = Broker::new(RedisTarget::new(redis_url, ca_file)?)?;
        Ok(Producer::from_broker(Arc::new(broker)))
    }

    /// Connects as `config` says: its Redis URL and CA (or cluster nodes),
    /// and the replicas each enqueue waits for (`wait_replicas`).
    pub fn from_config(config: &crate::config::Config) -> Result<Self> {
        let target = RedisTarget::open(
            &config.redis_url,
            config.redis_ca_file.as_deref(),
            &config.redis_cluster_nodes,
        )?
        .with_wait_replicas(config.wait_replicas, config.wait_timeout());
        Ok(Producer::from_broker(Arc::new(Broker::new(target)?)))
    }

    pub fn from_broker(broker: Arc<Broker>) -> Self {
        Producer {
            broker,
            shards: Arc::default(),
            blockers: Arc::default(),
        }
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Enqueues one job (to `delayed` when it has a `run_at`); returns its
    /// id, or [`ProducerError::Duplicate`] when its `unique_key` is held.
    pub async fn enqueue(&self, queue: &str, job: Job) -> Result<String> {
        self.enqueue_one(queue, job, &BatchOptions::default())
            .await
            .map(|s| s.ids.into_iter().next().unwrap_or_default())
    }

    /// Enqueues one job and waits for its final result (succeeded or dead),
    /// woken by the worker's notification rather than by polling.
    pub async fn enqueue_and_wait(
        &self,
        queue: &str,
        job: Job,
        options: &BatchOptions,
        timeout: Duration,
    ) -> Result<JobResult> {
        let options = BatchOptions {
            awaitable: true,
            ..options.clone()
        };
        let submitted = self.enqueue_one(queue, job, &options).await?;
        let id = submitted.ids.first().cloned().unwrap_or_default();
        let mut waiter = self.await_batch(&submitted, Some(timeout))?;
        match waiter.next().await {
            Some(Ok(f)) => f.result.ok_or(ProducerError::NoResult { id }),
            Some(Err(ProducerError::BatchTimeout { waited, .. })) => {
                Err(ProducerError::Timeout { id, waited })
            }
            Some(Err(e)) => Err(e),
            None => Err(ProducerError::NoResult { id }),
        }
    }

    async fn enqueue_one(
        &self,
        queue: &str,
        job: Job,
        options: &BatchOptions,
    ) -> Result<Submitted> {
        let unique_key = job.unique_key.clone();
        let submitted = self
            .enqueue_batch(queue, std::slice::from_ref(&job), options)
            .await?;
        match unique_key {
            Some(unique_key) if !submitted.duplicates.is_empty() => {
                Err(ProducerError::Duplicate { unique_key })
            }
            _ => Ok(submitted),
        }
    }

    /// The job's stored result, if any.
    pub async fn result(&self, queue: &str, id: &str) -> Result<Option<JobResult>> {
        match self.result_text(queue, id).await? {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| ProducerError::BadResult {
                        id: id.to_owned(),
                        message: e.to_string(),
                    })
            }
        }
    }

    /// The job's result document as text, from whichever shard of the
    /// queue ran it (one pipelined `GET` per shard a job may be in; one
    /// `GET` on a queue never sharded): what the worker wrote, with the
    /// fields the stored form leaves out put back
    /// ([`crate::job::expand_result`]).
    pub async fn result_text(&self, queue: &str, id: &str) -> Result<Option<String>> {
        let layout = self.shards.layout(&self.broker, queue).await?;
        let stored = if layout.max == 1 {
            self.broker.result(&QueueKeys::new(queue), id).await?
        } else {
            let found = self.broker.result_in_shards(&layout.all(queue), id).await?;
            found.into_iter().flatten().next()
        };
        Ok(stored.map(|t| crate::job::expand_result(id, &t)))
    }

    /// `queue`'s shard layout, as this producer last read it (at most a
    /// second old).
    pub async fn shard_layout(&self, queue: &str) -> Result<crate::queue::Shards> {
        Ok(self.shards.layout(&self.broker, queue).await?)
    }

    /// Waits until a job has a final result by polling its result key: for
    /// jobs enqueued by someone else (not tagged with a batch). Jobs this
    /// producer enqueues are better awaited with [`Producer::await_batch`].
    pub async fn wait(&self, queue: &str, id: &str, timeout: Duration) -> Result<JobResult> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.result(queue, id).await? {
                if r.is_final() {
                    return Ok(r);
                }
            }
            if start.elapsed() >= timeout {
                return Err(ProducerError::Timeout {
                    id: id.to_owned(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
