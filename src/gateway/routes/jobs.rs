//! `GET /jobs/{id}`: a job's result document, or its state and progress
//! while it has none.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{query_of, queue_of};
use crate::gateway::api::{ApiError, ErrorBody, JobStatus};
use crate::gateway::auth::Principal;
use crate::gateway::core::Gateway;
use crate::job::JobResult;
use crate::producer::JobState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// The job's queue [default: `default`].
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub queue: Option<String>,
}

/// The job's result document once it finished (`succeeded`, `dead`,
/// `cancelled`); before that, where it is (`pending`, `scheduled`,
/// `running`, `retrying`) and the progress its tool last reported. Finding an unfinished job costs Redis O(queue
/// depth).
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), JobQuery),
    responses(
        (status = 200, description = "The result document, or the state of an unfinished job", body = JobResult),
        (status = 202, description = "Not finished: its state", body = JobStatus),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The token may not read results, or not of this queue", body = ErrorBody),
        (status = 404, description = "Unknown id (or its result expired)", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let queue = queue_of(query_of(query)?.queue)?;
    if !who.grant.results {
        return Err(ApiError::Forbidden(
            "this token may not read results".into(),
        ));
    }
    if !who.grant.may_use_queue(&queue) {
        return Err(ApiError::Forbidden(format!(
            "this token may not use queue `{queue}`"
        )));
    }
    gw.admit(&who).await?;
    if let Some(raw) = gw.producer.result_text(&queue, &id).await? {
        if serde_json::from_str::<JobResult>(&raw).is_ok_and(|r| r.is_final()) {
            return Ok(([(header::CONTENT_TYPE, "application/json")], raw).into_response());
        }
    }
    let view = gw.producer.job(&queue, &id).await?;
    match view.state {
        JobState::Unknown => Err(ApiError::NotFound(format!(
            "no job {id} in queue `{queue}` (unknown id, or its result expired)"
        ))),
        // Finished between the two reads.
        JobState::Succeeded | JobState::Dead | JobState::Cancelled => {
            match gw.producer.result_text(&queue, &id).await? {
                Some(raw) => {
                    Ok(([(header::CONTENT_TYPE, "application/json")], raw).into_response())
                }
                None => Err(ApiError::NotFound(format!(
                    "job {id} finished {} but its result expired",
                    view.state
                ))),
            }
        }
        state => Ok((
            StatusCode::ACCEPTED,
            Json(JobStatus {
                id,
                queue,
                status: state.to_string(),
                attempts: view.attempts,
                due_at: view.due_at,
                worker: view.worker,
                progress: view.progress,
            }),
        )
            .into_response()),
    }
}
