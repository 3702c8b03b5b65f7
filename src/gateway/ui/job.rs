//! The job page: one job's state (and where it is: due when, on which
//! worker), the progress its tool reported, its payload, its result or
//! error, its attempts, and for admins the action that fits: cancel while
//! it can still be stopped, retry once dead.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Extension;
use serde_json::Value;

use super::actions::{queue_path, Notice, NoticeQuery};
use super::page::{render, Layout, PageError};
use super::session::{url_encode, Session};
use super::{view, Console};
use crate::producer::JobState;

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    layout: Layout,
    notice: Option<Notice>,
    queue: String,
    base: String,
    id: String,
    href: String,
    /// `pending`, `scheduled`, ... as the producer names it.
    state: String,
    facts: Vec<(&'static str, String)>,
    /// The latest progress report: percent done (0 to 100) and its line.
    progress: Option<(u32, String)>,
    payload: Option<String>,
    result: Option<String>,
    error: Option<String>,
    cancellable: bool,
    retryable: bool,
}

pub async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Path((queue, id)): Path<(String, String)>,
    Query(q): Query<NoticeQuery>,
) -> Result<Html<String>, PageError> {
    let queue = crate::gateway::routes::queue_of(Some(queue))
        .map_err(|e| PageError::bad_request(e.to_string()))?;
    session.check_queue(&queue)?;
    let job = console.producer.job(&queue, &id).await?;
    let now = crate::job::now_ms();
    let state = job.state;
    let mut facts = vec![("Queue", queue.clone())];
    if let Some(tool) = job
        .payload
        .as_ref()
        .and_then(|p| p.get("tool"))
        .and_then(Value::as_str)
    {
        facts.push(("Tool", tool.to_owned()));
    }
    if let Some(a) = job.attempts {
        facts.push(("Attempts", a.to_string()));
    }
    if let Some(max) = job
        .payload
        .as_ref()
        .and_then(|p| p.get("max_attempts"))
        .and_then(Value::as_u64)
    {
        facts.push(("Max attempts", max.to_string()));
    }
    if let Some(t) = job
        .payload
        .as_ref()
        .and_then(|p| p.get("enqueued_at"))
        .and_then(Value::as_u64)
    {
        facts.push((
            "Enqueued",
            format!("{} ({})", view::ago(t, now), view::utc(t)),
        ));
    }
    if let Some(t) = job.due_at {
        facts.push(("Due", format!("{} ({})", view::ago(t, now), view::utc(t))));
    }
    if let Some(w) = &job.worker {
        facts.push(("Worker", w.clone()));
    }
    if let Some(t) = job.died_at {
        facts.push(("Died", format!("{} ({})", view::ago(t, now), view::utc(t))));
    }
    let error = job
        .error
        .as_ref()
        .filter(|e| !e.is_null())
        .map(view::pretty);
    let base = queue_path(&queue);
    let href = format!("{base}/jobs/{}", url_encode(&id).replace('/', "%2F"));
    render(&JobPage {
        layout: Layout::new(&session, ""),
        notice: q.notice(),
        cancellable: matches!(
            state,
            JobState::Pending | JobState::Scheduled | JobState::Running | JobState::Retrying
        ),
        retryable: matches!(state, JobState::Dead),
        state: state.as_str().to_owned(),
        facts,
        progress: job
            .progress
            .as_ref()
            .map(|p| ((p.fraction * 100.0).floor() as u32, p.line())),
        payload: job.payload.as_ref().map(view::pretty),
        result: job.result.as_ref().map(view::pretty),
        error,
        href,
        base,
        id,
        queue,
    })
}
