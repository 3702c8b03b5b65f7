//! Listing a queue's jobs in one state (pending, scheduled, running,
//! dead), filtered by tool or error kind, a page at a time: the CLI's
//! `toolq jobs`, the gateway and the console. O(depth) in Redis.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::QueueKeys;

use super::lookup::{parse, JobState};
use super::{Producer, Result};

/// Entries read per round trip while filtering a list.
const SCAN_PAGE: usize = 1000;

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
