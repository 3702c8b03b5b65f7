//! The workers page: every live worker of the queues the token may see,
//! from its registration document (host, pid, concurrency, version, when it
//! started) and its queues' worker sets (last heartbeat, jobs it holds),
//! a sharded queue's added up over its shards.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use serde_json::Value;

use super::page::{render, Layout, PageError};
use super::session::Session;
use super::{view, Console};
use crate::queue::QueueKeys;

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    layout: Layout,
    rows: Vec<WorkerRow>,
}

#[derive(Default)]
struct WorkerRow {
    id: String,
    host: String,
    pid: String,
    concurrency: String,
    version: String,
    queues: Vec<String>,
    /// Jobs it holds now, over every queue shown.
    in_flight: u64,
    /// `1.2 s ago`, the newest of its queues' heartbeats.
    heartbeat: String,
    heartbeat_ms: u64,
    started: String,
}

pub async fn page(
    State(console): State<Arc<Console>>,
    Extension(session): Extension<Session>,
) -> Result<Html<String>, PageError> {
    let stats = console.producer.stats(console.heartbeat_timeout).await?;
    let broker = console.producer.broker();
    let now = broker
        .time_ms()
        .await
        .map_err(crate::producer::ProducerError::from)?;
    let mut rows: BTreeMap<String, WorkerRow> = BTreeMap::new();
    for s in stats.iter().filter(|s| session.may_see(&s.queue)) {
        let ids: Vec<String> = s.workers.iter().map(|w| w.id.clone()).collect();
        for w in &s.workers {
            rows.entry(w.id.clone())
                .or_insert_with(|| describe(&w.id, w.info.as_ref(), now))
                .queues
                .push(s.queue.clone());
        }
        // A worker holds jobs and heart-beats on each shard it serves, each
        // shard's own keys: shard 0 alone would miss the rest.
        // `shards` lists them only for a queue ever sharded.
        let shards: Vec<u32> = match s.shards.is_empty() {
            true => vec![0],
            false => s.shards.iter().map(|k| k.shard).collect(),
        };
        for k in shards {
            let activity = broker
                .worker_activity(&QueueKeys::shard(&s.queue, k), &ids)
                .await
                .map_err(crate::producer::ProducerError::from)?;
            for (id, (beat, held)) in ids.iter().zip(activity) {
                let Some(row) = rows.get_mut(id) else {
                    continue;
                };
                row.in_flight += held;
                if let Some(beat) = beat.filter(|b| *b > row.heartbeat_ms) {
                    row.heartbeat_ms = beat;
                    row.heartbeat = view::ago(beat, now);
                }
            }
        }
    }
    render(&WorkersPage {
        layout: Layout::new(&session, "workers"),
        rows: rows.into_values().collect(),
    })
}

/// A worker's row from its registration document (`?` where it has no such
/// field, or the document expired).
fn describe(id: &str, info: Option<&Value>, now: u64) -> WorkerRow {
    let field = |k: &str| match info.and_then(|i| i.get(k)) {
        Some(Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => "?".into(),
    };
    let started = info
        .and_then(|i| i.get("started_at"))
        .and_then(Value::as_u64)
        .map(|t| view::ago(t, now))
        .unwrap_or_else(|| "?".into());
    WorkerRow {
        id: id.to_owned(),
        host: field("host"),
        pid: field("pid"),
        concurrency: field("concurrency"),
        version: field("version"),
        started,
        heartbeat: "?".into(),
        ..WorkerRow::default()
    }
}
