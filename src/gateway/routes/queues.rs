//! Operator control over HTTP: queues (list, pause, resume, delete) and
//! cancelling a job. Reading needs `results`, acting needs `admin`; the
//! same producer calls as `toolq queue` and `toolq job cancel`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{query_of, queue_of};
use crate::gateway::api::{ApiError, ErrorBody};
use crate::gateway::auth::Principal;
use crate::gateway::core::Gateway;
use crate::producer::CancelOutcome;

/// One queue: depths by state, totals, pause.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueInfo {
    pub queue: String,
    pub pending: u64,
    /// Running (held by workers).
    pub active: u64,
    /// Scheduled and retrying.
    pub delayed: u64,
    pub dead: u64,
    pub paused: bool,
    /// Live workers serving it.
    pub workers: usize,
    pub succeeded: u64,
    pub retrying: u64,
    pub died: u64,
    pub cancelled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueInfo>,
}

/// What an action did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub queue: String,
    /// `paused`, `resumed` or `deleted`.
    pub done: String,
}

/// What `POST /jobs/{id}/cancel` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelReply {
    pub id: String,
    /// `removed` (it never runs), `requested` (its worker stops it),
    /// `finished` (too late) or `unknown`.
    pub outcome: String,
    /// The state it was removed from, or finished in.
    pub state: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelQuery {
    /// The job's queue [default: `default`].
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub queue: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Must repeat the queue's name: deleting is not undone.
    pub confirm: String,
}

fn admin(who: &Principal) -> Result<(), ApiError> {
    match who.grant.admin {
        true => Ok(()),
        false => Err(ApiError::Forbidden(
            "this needs a token with `admin`".into(),
        )),
    }
}

fn reader(who: &Principal, queue: &str) -> Result<(), ApiError> {
    if !(who.grant.results || who.grant.admin) {
        return Err(ApiError::Forbidden(
            "this token may not read results".into(),
        ));
    }
    if !who.grant.may_use_queue(queue) {
        return Err(ApiError::Forbidden(format!(
            "this token may not use queue `{queue}`"
        )));
    }
    Ok(())
}

fn heartbeat_timeout(gw: &Gateway) -> Duration {
    Duration::from_millis(gw.heartbeat_timeout_ms)
}

/// Every registered queue the token may use (from the queue registry,
/// never a walk of the keyspace).
#[utoipa::path(get, path = "/queues", tag = "queues",
    responses(
        (status = 200, description = "The queues", body = QueueList),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The token may not read results", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<QueueList>, ApiError> {
    if !(who.grant.results || who.grant.admin) {
        return Err(ApiError::Forbidden(
            "this token may not read results".into(),
        ));
    }
    gw.admit(&who).await?;
    let stats = gw.producer.stats(heartbeat_timeout(&gw)).await?;
    let queues = stats
        .into_iter()
        .filter(|s| who.grant.may_use_queue(&s.queue))
        .map(|s| QueueInfo {
            pending: s.pending,
            active: s.active,
            delayed: s.delayed,
            dead: s.dead,
            paused: s.paused,
            workers: s.workers.len(),
            succeeded: s.totals.succeeded,
            retrying: s.totals.retrying,
            died: s.totals.dead,
            cancelled: s.totals.cancelled,
            queue: s.queue,
        })
        .collect();
    Ok(Json(QueueList { queues }))
}

/// Workers stop taking jobs from the queue within a second; running jobs
/// finish.
#[utoipa::path(post, path = "/queues/{queue}/pause", tag = "queues",
    params(("queue" = String, Path, description = "The queue", min_length = 1, max_length = 100, pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$")),
    responses(
        (status = 200, description = "Paused", body = Done),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Needs `admin`", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pause(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Path(queue): Path<String>,
) -> Result<Json<Done>, ApiError> {
    set_paused(&gw, &who, queue, true).await
}

#[utoipa::path(post, path = "/queues/{queue}/resume", tag = "queues",
    params(("queue" = String, Path, description = "The queue", min_length = 1, max_length = 100, pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$")),
    responses(
        (status = 200, description = "Resumed", body = Done),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Needs `admin`", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn resume(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Path(queue): Path<String>,
) -> Result<Json<Done>, ApiError> {
    set_paused(&gw, &who, queue, false).await
}

async fn set_paused(
    gw: &Gateway,
    who: &Principal,
    queue: String,
    paused: bool,
) -> Result<Json<Done>, ApiError> {
    let queue = queue_of(Some(queue))?;
    admin(who)?;
    gw.admit(who).await?;
    let done = match paused {
        true => {
            gw.producer.pause(&queue).await?;
            "paused"
        }
        false => {
            gw.producer.resume(&queue).await?;
            "resumed"
        }
    };
    Ok(Json(Done {
        queue,
        done: done.into(),
    }))
}

/// Deletes the queue and everything in it; refused while live workers
/// serve it.
#[utoipa::path(delete, path = "/queues/{queue}", tag = "queues",
    params(("queue" = String, Path, description = "The queue", min_length = 1, max_length = 100, pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$"), DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = Done),
        (status = 400, description = "Bad queue name, no confirmation, or live workers", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Needs `admin`", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Path(queue): Path<String>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Done>, ApiError> {
    let queue = queue_of(Some(queue))?;
    let query = query_of(query)?;
    admin(&who)?;
    if query.confirm != queue {
        return Err(ApiError::BadRequest(format!(
            "to delete queue `{queue}`, repeat its name: ?confirm={queue}"
        )));
    }
    gw.admit(&who).await?;
    gw.producer
        .delete_queue(&queue, heartbeat_timeout(&gw))
        .await?;
    Ok(Json(Done {
        queue,
        done: "deleted".into(),
    }))
}

/// Cancels a job: pending or scheduled, it never runs; running, its worker
/// stops the call and the job ends `cancelled` (a waiting client sees it).
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), CancelQuery),
    responses(
        (status = 200, description = "What the cancel did", body = CancelReply),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "Needs `admin`", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<CancelQuery>, QueryRejection>,
) -> Result<Json<CancelReply>, ApiError> {
    let queue = queue_of(query_of(query)?.queue)?;
    admin(&who)?;
    reader(&who, &queue)?;
    gw.admit(&who).await?;
    let (outcome, state) = match gw.producer.cancel(&queue, &id).await? {
        CancelOutcome::Removed(s) => ("removed", Some(s.to_string())),
        CancelOutcome::Requested => ("requested", None),
        CancelOutcome::Finished(s) => ("finished", Some(s.to_string())),
        CancelOutcome::Unknown => ("unknown", None),
    };
    Ok(Json(CancelReply {
        id,
        outcome: outcome.into(),
        state,
    }))
}
