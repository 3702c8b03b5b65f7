//! The job browser: one queue's pending, scheduled, running or dead jobs,
//! a page at a time, filtered by tool (and dead jobs by error kind), with
//! the actions that fit each state for admins.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use serde::Deserialize;

use super::actions::{Notice, NoticeQuery};
use super::page::{render, Layout, PageError};
use super::session::{url_encode, Session};
use super::{view, Console};
use crate::producer::{JobFilter, ListState};

/// Jobs per page.
const PAGE: usize = 25;

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    layout: Layout,
    notice: Option<Notice>,
    queue: String,
    /// `/ui/queues/<queue>`, encoded.
    base: String,
    state: &'static str,
    tabs: Vec<Tab>,
    tool: String,
    error_kind: String,
    rows: Vec<JobRow>,
    total: u64,
    /// 1-based index of the first row shown.
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    paused: bool,
}

struct Tab {
    state: &'static str,
    label: &'static str,
    count: u64,
}

struct JobRow {
    id: String,
    /// The job page's path.
    href: String,
    tool: String,
    attempt: String,
    /// Due, running since, or died: as an age, with the exact time.
    when: String,
    when_exact: String,
    worker: String,
    error_kind: String,
    error_message: String,
    /// Dead entries without an id (never a valid job) cannot be retried.
    has_id: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    error_kind: Option<String>,
    /// Text, so that a bad number gets the console's 400 page.
    #[serde(default)]
    offset: Option<String>,
    // The fields of a `NoticeQuery` (serde's flatten cannot read numbers
    // from a query string).
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    n: Option<String>,
}

fn parse_state(s: Option<&str>) -> Result<(ListState, &'static str), PageError> {
    Ok(match s.unwrap_or("pending") {
        "pending" => (ListState::Pending, "pending"),
        "scheduled" => (ListState::Scheduled, "scheduled"),
        "running" => (ListState::Running, "running"),
        "dead" => (ListState::Dead, "dead"),
        other => {
            return Err(PageError::bad_request(format!(
                "state {other:?}: one of pending, scheduled, running, dead"
            )))
        }
    })
}

pub async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path(queue): Path<String>,
    Query(q): Query<JobsQuery>,
) -> Result<Html<String>, PageError> {
    let queue = crate::gateway::routes::queue_of(Some(queue))
        .map_err(|e| PageError::bad_request(e.to_string()))?;
    session.check_queue(&queue)?;
    let (list_state, state) = parse_state(q.state.as_deref())?;
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let tool = clean(&q.tool);
    let error_kind = if state == "dead" {
        clean(&q.error_kind)
    } else {
        None
    };
    let offset: usize = match q.offset.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        None => 0,
        Some(o) => o
            .parse()
            .map_err(|_| PageError::bad_request(format!("offset {o:?} is not a number")))?,
    };
    let filter = JobFilter {
        state: list_state,
        tool: tool.clone(),
        error_kind: error_kind.clone(),
        limit: PAGE,
        offset,
    };
    let p = &console.producer;
    let stats = p.queue_stats(&queue, console.heartbeat_timeout).await?;
    let listed = p.list_jobs(&queue, &filter).await?;
    let now = crate::job::now_ms();
    let base = super::actions::queue_path(&queue);
    let rows: Vec<JobRow> = listed
        .jobs
        .into_iter()
        .map(|j| {
            let id = j.id.unwrap_or_default();
            JobRow {
                href: format!("{base}/jobs/{}", url_encode(&id).replace('/', "%2F")),
                has_id: !id.is_empty(),
                id,
                tool: j.tool.unwrap_or_else(|| "?".into()),
                attempt: j.attempt.saturating_add(1).to_string(),
                when: j.at.map(|t| view::ago(t, now)).unwrap_or_default(),
                when_exact: j.at.map(view::utc).unwrap_or_default(),
                worker: j.worker.unwrap_or_default(),
                error_kind: j.error_kind.unwrap_or_default(),
                error_message: view::excerpt(&j.error_message.unwrap_or_default(), 160),
            }
        })
        .collect();
    let link = |offset: usize| {
        let mut s = format!("{base}/jobs?state={state}&offset={offset}");
        if let Some(t) = &tool {
            s += &format!("&tool={}", url_encode(t));
        }
        if let Some(k) = &error_kind {
            s += &format!("&error_kind={}", url_encode(k));
        }
        s
    };
    let total = listed.total;
    let shown = rows.len() as u64;
    let page = JobsPage {
        layout: Layout::new(&session, ""),
        notice: NoticeQuery {
            notice: q.notice.clone(),
            n: q.n.clone(),
        }
        .notice(),
        tabs: vec![
            Tab {
                state: "pending",
                label: "Pending",
                count: stats.pending,
            },
            Tab {
                state: "scheduled",
                label: "Scheduled",
                count: stats.delayed,
            },
            Tab {
                state: "running",
                label: "Running",
                count: stats.active,
            },
            Tab {
                state: "dead",
                label: "Dead",
                count: stats.dead,
            },
        ],
        paused: stats.paused,
        state,
        tool: tool.clone().unwrap_or_default(),
        error_kind: error_kind.clone().unwrap_or_default(),
        first: if shown == 0 { 0 } else { offset as u64 + 1 },
        last: offset as u64 + shown,
        prev: (offset > 0).then(|| link(offset.saturating_sub(PAGE))),
        next: ((offset as u64 + shown) < total).then(|| link(offset + PAGE)),
        total,
        rows,
        base,
        queue,
    };
    render(&page)
}
