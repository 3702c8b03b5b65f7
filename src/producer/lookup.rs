//! Where a job is and what became of it, by id, whatever its shard: its
//! state, payload, result, progress. Lookups cost O(depth) in Redis:
//! operator paths only (`toolq job`, the gateway, the console).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::Progress;
use crate::queue::{Located, QueueKeys};

use super::{Producer, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    /// In the delayed set for its `run_at`.
    Scheduled,
    Running,
    /// In the delayed set for its next attempt after a failure.
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
    Unknown,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::Unknown => "unknown",
        }
    }

    pub(super) fn of_status(status: &str) -> JobState {
        match status {
            "succeeded" => JobState::Succeeded,
            "dead" => JobState::Dead,
            "cancelled" => JobState::Cancelled,
            "retrying" => JobState::Retrying,
            _ => JobState::Unknown,
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub state: JobState,
    /// The job as queued (for a dead job: as it died).
    pub payload: Option<Value>,
    /// Its result document (the latest attempt's while it retries).
    pub result: Option<Value>,
    /// Attempts made so far.
    pub attempts: Option<u32>,
    /// When a scheduled or retrying job is due (unix ms, Redis clock).
    pub due_at: Option<u64>,
    /// The worker running it.
    pub worker: Option<String>,
    /// When a dead job died (unix ms).
    pub died_at: Option<u64>,
    /// `{kind, message}` of a dead or failed job.
    pub error: Option<Value>,
    /// The latest progress its tool reported (kept until the job's result
    /// expires; after a retry, the earlier attempt's until the new one
    /// reports).
    pub progress: Option<Progress>,
}

impl Producer {
    /// Where job `id` of `queue` is: the shard holding it, and how. Asks
    /// each shard in turn (a job is in one).
    pub(super) async fn locate(&self, queue: &str, id: &str) -> Result<(QueueKeys, Located)> {
        let mut shards = self.shard_keys(queue).await?.into_iter();
        let first = shards.next().unwrap_or_else(|| QueueKeys::new(queue));
        let located = self.broker.locate(&first, id).await?;
        if located != Located::Unknown {
            return Ok((first, located));
        }
        for keys in shards {
            let located = self.broker.locate(&keys, id).await?;
            if located != Located::Unknown {
                return Ok((keys, located));
            }
        }
        Ok((first, Located::Unknown))
    }

    /// Where job `id` of `queue` is and what became of it, whatever its
    /// shard.
    pub async fn job(&self, queue: &str, id: &str) -> Result<JobView> {
        let (keys, located) = self.locate(queue, id).await?;
        let mut view = JobView {
            id: id.to_owned(),
            queue: queue.to_owned(),
            state: JobState::Unknown,
            payload: None,
            result: None,
            attempts: None,
            due_at: None,
            worker: None,
            died_at: None,
            error: None,
            progress: None,
        };
        match located {
            Located::Pending { payload } => {
                view.state = JobState::Pending;
                view.payload = parse(&payload);
            }
            Located::Scheduled { payload, due_ms } => {
                view.payload = parse(&payload);
                view.state = match attempt_of(view.payload.as_ref()) {
                    0 => JobState::Scheduled,
                    _ => JobState::Retrying,
                };
                view.due_at = Some(due_ms);
            }
            Located::Running { payload, worker } => {
                view.state = JobState::Running;
                view.payload = parse(&payload);
                view.worker = Some(worker);
            }
            Located::Dead { entry, died_ms } => {
                view.state = JobState::Dead;
                let entry = parse(&entry).unwrap_or(Value::Null);
                view.payload = Some(entry["job"].clone());
                view.error = Some(entry["error"].clone());
                view.died_at = Some(died_ms);
            }
            Located::Result { doc } => {
                let doc = parse(&doc).unwrap_or(Value::Null);
                view.state = JobState::of_status(doc["status"].as_str().unwrap_or(""));
            }
            Located::Unknown => return Ok(view),
        }
        if view.result.is_none() {
            view.result = self
                .broker
                .result(&keys, id)
                .await?
                .and_then(|t| parse(&crate::job::expand_result(id, &t)));
        }
        if let Some(doc) = &view.result {
            if view.error.is_none() && doc["error"].is_object() {
                view.error = Some(doc["error"].clone());
            }
            view.attempts = doc["attempts"].as_u64().map(|a| a as u32);
        }
        if view.attempts.is_none() {
            view.attempts = Some(attempt_of(view.payload.as_ref()));
        }
        if view.state != JobState::Pending {
            let text = self.broker.progress(&keys, id).await?;
            view.progress = text.as_deref().and_then(Progress::parse);
        }
        Ok(view)
    }

    /// The latest progress reports of jobs `ids` of one queue, in order
    /// (one round trip per shard of the queue).
    pub async fn progress_many(
        &self,
        queue: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Progress>>> {
        let mut texts: Vec<Option<String>> = vec![None; ids.len()];
        for keys in self.shard_keys(queue).await? {
            let found = self.broker.progress_many(&keys, ids).await?;
            for (t, f) in texts.iter_mut().zip(found) {
                if t.is_none() {
                    *t = f;
                }
            }
        }
        Ok(texts
            .iter()
            .map(|t| t.as_deref().and_then(Progress::parse))
            .collect())
    }

    /// The latest progress job `id` reported, if any, whatever its shard.
    pub async fn progress(&self, queue: &str, id: &str) -> Result<Option<Progress>> {
        let many = self.progress_many(queue, &[id.to_owned()]).await?;
        Ok(many.into_iter().next().flatten())
    }
}

pub(super) fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

fn attempt_of(payload: Option<&Value>) -> u32 {
    payload.and_then(|p| p["attempt"].as_u64()).unwrap_or(0) as u32
}
