//! The producer: puts jobs on queues and waits for their results. The CLI's
//! `enqueue`, `submit` and `demo` use exactly this API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::job::{self, Job, JobResult};
use crate::queue::{Broker, QueueError, QueueKeys, RedisTarget};

/// Poll interval while waiting for a single result.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("producer: invalid job: {0}")]
    InvalidJob(String),
    #[error("producer: no result for job {id} after {waited:?}")]
    Timeout { id: String, waited: Duration },
    #[error("producer: result of job {id} is not valid JSON: {message}")]
    BadResult { id: String, message: String },
}

pub type Result<T, E = ProducerError> = std::result::Result<T, E>;

/// Enqueues jobs on behalf of a program or the CLI.
#[derive(Clone)]
pub struct Producer {
    broker: Arc<Broker>,
}

impl Producer {
    pub fn connect(redis_url: &str, ca_file: Option<&std::path::Path>) -> Result<Self> {
        let broker = Broker::new(RedisTarget::new(redis_url, ca_file)?)?;
        Ok(Producer {
            broker: Arc::new(broker),
        })
    }

    pub fn from_broker(broker: Arc<Broker>) -> Self {
        Producer { broker }
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Fills in `id` (UUIDv7) and `enqueued_at` and serialises the job.
    pub fn prepare(job: &mut Job) -> Result<String> {
        if job.id.is_none() {
            job.id = Some(uuid::Uuid::now_v7().to_string());
        }
        if job.enqueued_at.is_none() {
            job.enqueued_at = Some(job::now_ms());
        }
        if !job.args.is_object() {
            return Err(ProducerError::InvalidJob(
                "`args` must be a JSON object".into(),
            ));
        }
        serde_json::to_string(job).map_err(|e| ProducerError::InvalidJob(e.to_string()))
    }

    /// Enqueues one job (to `delayed` when it has a `run_at`); returns its id.
    pub async fn enqueue(&self, queue: &str, mut job: Job) -> Result<String> {
        let payload = Self::prepare(&mut job)?;
        let keys = QueueKeys::new(queue);
        match job.run_at {
            Some(at) => self.broker.schedule(&keys, &payload, at).await?,
            None => self.broker.enqueue(&keys, &payload).await?,
        }
        Ok(job.id.unwrap_or_default())
    }

    /// Enqueues many jobs in pipelined chunks; returns their ids in order.
    pub async fn enqueue_batch(&self, queue: &str, jobs: Vec<Job>) -> Result<Vec<String>> {
        let keys = QueueKeys::new(queue);
        let mut ids = Vec::with_capacity(jobs.len());
        let mut now = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let payload = Self::prepare(&mut job)?;
            ids.push(job.id.clone().unwrap_or_default());
            match job.run_at {
                Some(at) => self.broker.schedule(&keys, &payload, at).await?,
                None => now.push(payload),
            }
        }
        self.broker.enqueue_many(&keys, &now).await?;
        Ok(ids)
    }

    /// The job's stored result, if any.
    pub async fn result(&self, queue: &str, id: &str) -> Result<Option<JobResult>> {
        let keys = QueueKeys::new(queue);
        match self.broker.result(&keys, id).await? {
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

    /// Waits until the job has a final result (succeeded or dead).
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
