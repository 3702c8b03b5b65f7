//! The queues page: each queue the token may see, its depth by state,
//! its live workers, its totals and throughput, whether it is paused, and
//! (for admins) pause and resume.

use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::Extension;

use super::actions::{Notice, NoticeQuery};
use super::page::{render, Layout, PageError};
use super::session::Session;
use super::Console;
use crate::producer::QueueStats;

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    layout: Layout,
    notice: Option<Notice>,
    rows: Vec<QueueRow>,
}

struct QueueRow {
    name: String,
    paused: bool,
    pending: u64,
    running: u64,
    scheduled: u64,
    dead: u64,
    workers: usize,
    succeeded: u64,
    retrying: u64,
    died: u64,
    cancelled: u64,
    /// `12.5/s over 40 s`, or empty before a second look.
    throughput: String,
}

pub async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
    Query(q): Query<NoticeQuery>,
) -> Result<Html<String>, PageError> {
    let stats = console.producer.stats(console.heartbeat_timeout).await?;
    let now = Instant::now();
    let rows = stats
        .into_iter()
        .filter(|s| session.may_see(&s.queue))
        .map(|s| row(&console, s, now))
        .collect();
    render(&QueuesPage {
        layout: Layout::new(&session, "queues"),
        notice: q.notice(),
        rows,
    })
}

fn row(console: &Console, s: QueueStats, now: Instant) -> QueueRow {
    let done = s.totals.succeeded + s.totals.dead;
    let throughput = console
        .throughput
        .observe(&s.queue, done, now)
        .map(|r| format!("{:.1}/s over {} s", r.per_s, r.over.as_secs()))
        .unwrap_or_default();
    QueueRow {
        paused: s.paused,
        pending: s.pending,
        running: s.active,
        scheduled: s.delayed,
        dead: s.dead,
        workers: s.workers.len(),
        succeeded: s.totals.succeeded,
        retrying: s.totals.retrying,
        died: s.totals.dead,
        cancelled: s.totals.cancelled,
        throughput,
        name: s.queue,
    }
}
