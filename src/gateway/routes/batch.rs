//! `POST /batch`: many calls in one request (a JSON array or NDJSON),
//! answered as an NDJSON stream of results as the jobs finish, or in input
//! order with `ordered=true`. Jobs still running when the wait ends are
//! reported as `pending`, so every job gets exactly one line.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use super::{body_bytes, meta_of, query_of, queue_of};
use crate::gateway::api::{ApiError, BatchItem, BatchLine, ErrorBody};
use crate::gateway::auth::Principal;
use crate::gateway::core::Gateway;
use crate::job::Job;
use crate::producer::{BatchOptions, BatchWaiter, ProducerError, Submitted};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Queue of every job [default: `default`].
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub queue: Option<String>,
    /// Answer in input order instead of completion order.
    #[serde(default)]
    pub ordered: bool,
    /// Longest the stream waits for results; capped by `max_wait_ms`.
    pub wait_ms: Option<u64>,
}

/// Enqueues every job, then streams one NDJSON line per job.
#[utoipa::path(post, path = "/batch", tag = "jobs",
    params(BatchQuery),
    request_body(content = Vec<BatchItem>, description = "A JSON array of jobs, or one job per line (NDJSON)",
        content_type = "application/json"),
    responses(
        (status = 200, description = "One line per job (NDJSON)", body = BatchLine, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad JSON or an unknown tool", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The token may not use a tool or the queue", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 422, description = "A job's arguments fail its tool's schema", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn batch(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    query: Result<Query<BatchQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let query = query_of(query)?;
    let queue = queue_of(query.queue)?;
    let items = parse(&body_bytes(body)?, gw.serve.max_batch)?;
    for (i, item) in items.iter().enumerate() {
        gw.authorize(&who, &item.tool, &queue)
            .map_err(|e| at(i, e))?;
    }
    gw.admit(&who).await?;
    for (i, item) in items.iter().enumerate() {
        gw.check(&item.tool, &item.args)
            .await
            .map_err(|e| at(i, e))?;
    }
    let jobs: Vec<Job> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| job_of(item).map_err(|e| at(i, e)))
        .collect::<Result<_, _>>()?;
    if jobs.is_empty() {
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], "").into_response());
    }
    let wait = gw.wait_for(&who, query.wait_ms.or(Some(gw.serve.max_wait_ms)));
    let options = BatchOptions {
        awaitable: !wait.is_zero(),
        ..BatchOptions::default()
    };
    let submitted = gw.producer.enqueue_batch(&queue, &jobs, &options).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    if options.awaitable {
        let waiter = gw
            .producer
            .await_batch(&submitted, Some(wait))
            .map_err(ApiError::from)?;
        tokio::spawn(stream_results(waiter, submitted, query.ordered, tx));
    } else {
        tokio::spawn(async move {
            for (index, id) in submitted.ids.iter().enumerate() {
                if tx.send(pending_line(index, id)).await.is_err() {
                    return;
                }
            }
        });
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Prefixes an item's error with its position, keeping its status.
fn at(index: usize, e: ApiError) -> ApiError {
    let m = |s: String| format!("job {index}: {s}");
    match e {
        ApiError::UnknownTool(s) => ApiError::UnknownTool(m(s)),
        ApiError::InvalidArgs(s) => ApiError::InvalidArgs(m(s)),
        ApiError::Forbidden(s) => ApiError::Forbidden(m(s)),
        ApiError::BadRequest(s) => ApiError::BadRequest(m(s)),
        e => e,
    }
}

/// A JSON array when the body starts with `[`, NDJSON otherwise.
fn parse(body: &[u8], max: usize) -> Result<Vec<BatchItem>, ApiError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let items: Vec<BatchItem> = match start.map(|i| body[i]) {
        None => {
            return Err(ApiError::BadRequest(
                "the request body is empty: send a JSON array of jobs or one job per line".into(),
            ))
        }
        Some(b'[') => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON array: {e}")))?,
        Some(_) => {
            let mut items = Vec::new();
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if items.len() == max {
                    return Err(too_many(max));
                }
                items.push(serde_json::from_slice(line).map_err(|e| {
                    ApiError::BadRequest(format!("line {}: invalid JSON: {e}", n + 1))
                })?);
            }
            items
        }
    };
    if items.len() > max {
        return Err(too_many(max));
    }
    Ok(items)
}

fn too_many(max: usize) -> ApiError {
    ApiError::TooLarge(format!(
        "a batch holds at most {max} jobs (serve.max_batch)"
    ))
}

fn job_of(item: BatchItem) -> Result<Job, ApiError> {
    let mut job = Job::new(item.tool, item.args);
    job.id = item.id;
    job.timeout_ms = item.timeout_ms;
    job.max_attempts = item.max_attempts;
    job.meta = meta_of(item.meta)?;
    Ok(job)
}

fn line(l: &BatchLine) -> Bytes {
    let mut text = serde_json::to_vec(l).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

fn pending_line(index: usize, id: &str) -> Bytes {
    line(&BatchLine {
        index,
        id: id.to_owned(),
        status: "pending".into(),
        result: None,
    })
}

/// Forwards results as they come; `ordered` holds each back until every
/// earlier one was sent. Ends with a `pending` line for each job the wait
/// did not see finish.
async fn stream_results(
    mut waiter: BatchWaiter,
    submitted: Submitted,
    ordered: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let mut held: BTreeMap<usize, Bytes> = BTreeMap::new();
    let mut next = 0;
    let mut sent = vec![false; submitted.ids.len()];
    loop {
        let finished = match waiter.next().await {
            Some(Ok(f)) => f,
            Some(Err(ProducerError::BatchTimeout { .. })) | None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "gateway.batch: waiting failed; reporting the rest as pending");
                break;
            }
        };
        let result: Option<Value> = finished
            .raw
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let status = finished
            .result
            .as_ref()
            .map(|r| r.status.clone())
            .unwrap_or_else(|| "finished".into());
        let bytes = line(&BatchLine {
            index: finished.index,
            id: finished.id,
            status,
            result,
        });
        held.insert(finished.index, bytes);
        if !flush(&mut held, &mut next, ordered, &mut sent, &tx).await {
            return;
        }
    }
    let positions: HashMap<&str, usize> = submitted
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    for id in waiter.unfinished_ids() {
        if let Some(&index) = positions.get(id.as_str()) {
            held.insert(index, pending_line(index, &id));
        }
    }
    flush(&mut held, &mut next, false, &mut sent, &tx).await;
}

/// Sends what may go now; false once the client is gone.
async fn flush(
    held: &mut BTreeMap<usize, Bytes>,
    next: &mut usize,
    ordered: bool,
    sent: &mut [bool],
    tx: &mpsc::Sender<Bytes>,
) -> bool {
    loop {
        let index = match held.keys().next() {
            Some(&i) if !ordered || i == *next => i,
            _ => return true,
        };
        let Some(bytes) = held.remove(&index) else {
            return true;
        };
        if let Some(s) = sent.get_mut(index) {
            *s = true;
        }
        while sent.get(*next).copied().unwrap_or(false) {
            *next += 1;
        }
        if tx.send(bytes).await.is_err() {
            return false;
        }
    }
}
