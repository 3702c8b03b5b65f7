//! Operator control by job id and by queue: where a job is and what became
//! of it, cancelling it, pausing a queue, listing jobs, deleting a queue.
//! The CLI (`toolq job`, `jobs`, `queue`), the gateway and the console all
//! call these. Lookups cost O(depth) in Redis: operator paths only.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::Progress;
use crate::queue::{CancelReply, Located, QueueKeys};

use super::{Producer, ProducerError, Result};

/// Entries read per round trip while filtering a list.
const SCAN_PAGE: usize = 1000;

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

    fn of_status(status: &str) -> JobState {
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

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "state", rename_all = "lowercase")]
pub enum CancelOutcome {
    /// Removed while pending or scheduled (its state then): it never runs.
    Removed(JobState),
    /// Running: its worker stops the call and settles it as cancelled
    /// within a heartbeat interval.
    Requested,
    /// It had finished already, in this state.
    Finished(JobState),
    Unknown,
}

/// Which jobs a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ListState {
    Pending,
    /// Scheduled and retrying jobs (the delayed set), soonest first.
    Scheduled,
    Running,
    /// Newest first.
    Dead,
}

#[derive(Debug, Clone)]
pub struct JobFilter {
    pub state: ListState,
    pub tool: Option<String>,
    /// Dead jobs only: the error kind (`tool_error`, `timeout`, ...).
    pub error_kind: Option<String>,
    /// 0 = no limit.
    pub limit: usize,
    pub offset: usize,
}

/// One job of a listing.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: Option<String>,
    pub tool: Option<String>,
    pub state: JobState,
    pub attempt: u32,
    /// Enqueued (pending, running), due (scheduled) or died (dead), unix ms.
    pub at: Option<u64>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub worker: Option<String>,
}

/// A page of a listing and how many jobs match in all.
#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    pub total: u64,
    pub jobs: Vec<JobSummary>,
}

impl Producer {
    /// Every queue in the registry, sorted.
    pub async fn queues(&self) -> Result<Vec<String>> {
        Ok(self.broker.registered_queues().await?)
    }

    /// The keys of every shard of `queue` a job may be in (one, unless
    /// the queue is sharded).
    async fn shard_keys(&self, queue: &str) -> Result<Vec<QueueKeys>> {
        Ok(self.shard_layout(queue).await?.all(queue))
    }

    /// Where job `id` of `queue` is: the shard holding it, and how. Asks
    /// each shard in turn (a job is in one).
    async fn locate(&self, queue: &str, id: &str) -> Result<(QueueKeys, Located)> {
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

    /// Cancels job `id`: a pending or scheduled job is removed at once and
    /// never runs; a running one is stopped by its worker.
    pub async fn cancel(&self, queue: &str, id: &str) -> Result<CancelOutcome> {
        let (keys, _) = self.locate(queue, id).await?;
        let prefix = serde_json::json!({
            "id": id,
            "status": "cancelled",
            "error": {"kind": "cancelled", "message": "cancelled by an operator"},
        })
        .to_string();
        // The script appends the fields it reads from the job.
        let prefix = prefix.strip_suffix('}').unwrap_or(&prefix);
        let ttl = crate::config::DEFAULT_RESULT_TTL_S;
        Ok(match self.broker.cancel(&keys, id, ttl, prefix).await? {
            CancelReply::Removed(state) => CancelOutcome::Removed(match state.as_str() {
                "scheduled" => JobState::Scheduled,
                _ => JobState::Pending,
            }),
            CancelReply::Requested => CancelOutcome::Requested,
            CancelReply::Finished(status) => CancelOutcome::Finished(JobState::of_status(&status)),
            CancelReply::Unknown => CancelOutcome::Unknown,
        })
    }

    /// [`Producer::cancel`], then for a running job waits up to `within`
    /// for its worker to settle it; returns the job as it then is.
    pub async fn cancel_and_wait(
        &self,
        queue: &str,
        id: &str,
        within: Duration,
    ) -> Result<(CancelOutcome, JobView)> {
        let outcome = self.cancel(queue, id).await?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let view = self.job(queue, id).await?;
            let settled = view.state != JobState::Running;
            if outcome != CancelOutcome::Requested
                || settled
                || tokio::time::Instant::now() >= deadline
            {
                return Ok((outcome, view));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Workers stop taking jobs from `queue` within a heartbeat interval;
    /// jobs already running finish.
    /// On a sharded queue, every shard is paused (shard 0 first: it is the
    /// one `is_paused` reads).
    pub async fn pause(&self, queue: &str) -> Result<()> {
        self.broker.register_queues(&[queue]).await?;
        for keys in self.shard_keys(queue).await? {
            self.broker.set_paused(&keys, true).await?;
        }
        Ok(())
    }

    pub async fn resume(&self, queue: &str) -> Result<()> {
        for keys in self.shard_keys(queue).await? {
            self.broker.set_paused(&keys, false).await?;
        }
        Ok(())
    }

    pub async fn is_paused(&self, queue: &str) -> Result<bool> {
        let flags = self.broker.control_flags(&[QueueKeys::new(queue)]).await?;
        Ok(flags.first().is_some_and(|f| f.paused))
    }

    /// Deletes every key of `queue` (jobs, results, dead set, totals) and
    /// unregisters it. Refused while a live worker serves it: its jobs in
    /// flight could not be settled.
    pub async fn delete_queue(&self, queue: &str, heartbeat_timeout: Duration) -> Result<u64> {
        let shards = self.shard_keys(queue).await?;
        for keys in &shards {
            let live = self.broker.live_workers(keys, heartbeat_timeout).await?;
            if !live.is_empty() {
                return Err(ProducerError::Refused(format!(
                    "queue `{queue}` has {} live worker(s) ({}): stop them first",
                    live.len(),
                    live.join(", ")
                )));
            }
        }
        let mut deleted = 0;
        // Shard 0 (with the layout) last: a failure part-way leaves the
        // layout that finds the rest.
        for keys in shards.iter().rev() {
            deleted += self.broker.delete_queue(keys).await?;
        }
        Ok(deleted)
    }

    /// A page of the jobs of `queue` in one state, filtered.
    /// On a sharded queue, shard after shard (FIFO holds within a shard
    /// only).
    pub async fn list_jobs(&self, queue: &str, filter: &JobFilter) -> Result<JobPage> {
        let mut page = Pager::new(filter);
        for keys in self.shard_keys(queue).await? {
            self.list_shard(&keys, filter, &mut page).await?;
        }
        Ok(page.finish())
    }

    async fn list_shard(
        &self,
        keys: &QueueKeys,
        filter: &JobFilter,
        page: &mut Pager<'_>,
    ) -> Result<()> {
        let keys = keys.clone();
        match filter.state {
            ListState::Pending => {
                let mut start = 0;
                loop {
                    let chunk = self.broker.pending_page(&keys, start, SCAN_PAGE).await?;
                    for p in &chunk {
                        page.offer(summary(p, JobState::Pending, None, None));
                    }
                    if chunk.len() < SCAN_PAGE {
                        break;
                    }
                    start += SCAN_PAGE;
                }
            }
            ListState::Scheduled => {
                let mut start = 0;
                loop {
                    let chunk = self.broker.scheduled_page(&keys, start, SCAN_PAGE).await?;
                    for (p, due) in &chunk {
                        let mut s = summary(p, JobState::Scheduled, Some(*due as u64), None);
                        if s.attempt > 0 {
                            s.state = JobState::Retrying;
                        }
                        page.offer(s);
                    }
                    if chunk.len() < SCAN_PAGE {
                        break;
                    }
                    start += SCAN_PAGE;
                }
            }
            ListState::Running => {
                for worker in self.broker.queue_workers(&keys).await? {
                    for p in self.broker.held_jobs(&keys, &worker).await? {
                        let text = String::from_utf8_lossy(&p);
                        page.offer(summary(&text, JobState::Running, None, Some(&worker)));
                    }
                }
            }
            ListState::Dead => {
                let mut start = 0;
                loop {
                    let chunk = self.broker.dead_page(&keys, start, SCAN_PAGE, true).await?;
                    for entry in &chunk {
                        page.offer(dead_summary(entry));
                    }
                    if chunk.len() < SCAN_PAGE {
                        break;
                    }
                    start += SCAN_PAGE;
                }
            }
        }
        Ok(())
    }
}

/// Counts the jobs that pass the filter and keeps the requested page.
struct Pager<'a> {
    filter: &'a JobFilter,
    total: u64,
    jobs: Vec<JobSummary>,
}

impl<'a> Pager<'a> {
    fn new(filter: &'a JobFilter) -> Self {
        Pager {
            filter,
            total: 0,
            jobs: Vec::new(),
        }
    }

    fn offer(&mut self, job: JobSummary) {
        let f = self.filter;
        if f.tool
            .as_deref()
            .is_some_and(|t| job.tool.as_deref() != Some(t))
        {
            return;
        }
        if f.error_kind
            .as_deref()
            .is_some_and(|k| job.error_kind.as_deref() != Some(k))
        {
            return;
        }
        let index = self.total as usize;
        self.total += 1;
        if index >= f.offset && (f.limit == 0 || index < f.offset + f.limit) {
            self.jobs.push(job);
        }
    }

    fn finish(self) -> JobPage {
        JobPage {
            total: self.total,
            jobs: self.jobs,
        }
    }
}

fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

fn attempt_of(payload: Option<&Value>) -> u32 {
    payload.and_then(|p| p["attempt"].as_u64()).unwrap_or(0) as u32
}

fn summary(payload: &str, state: JobState, due: Option<u64>, worker: Option<&str>) -> JobSummary {
    let v = parse(payload).unwrap_or(Value::Null);
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    JobSummary {
        id: text("id"),
        tool: text("tool"),
        state,
        attempt: v["attempt"].as_u64().unwrap_or(0) as u32,
        at: due.or_else(|| v["enqueued_at"].as_u64()),
        error_kind: None,
        error_message: None,
        worker: worker.map(str::to_owned),
    }
}

fn dead_summary(entry: &str) -> JobSummary {
    let v = parse(entry).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    JobSummary {
        // A payload kept only in part has its id beside it, if readable.
        id: text(&v["job"]["id"]).or_else(|| text(&v["truncated"]["id"])),
        tool: text(&v["job"]["tool"]),
        state: JobState::Dead,
        attempt: v["job"]["attempt"].as_u64().unwrap_or(0) as u32,
        at: v["died_at"].as_u64(),
        error_kind: text(&v["error"]["kind"]),
        error_message: text(&v["error"]["message"]),
        worker: text(&v["worker"]),
    }
}
