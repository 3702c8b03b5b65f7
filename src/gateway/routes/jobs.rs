//! `GET /jobs/{id}`: a job's result document.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{query_of, queue_of};
use crate::gateway::api::{ApiError, ErrorBody};
use crate::gateway::auth::Principal;
use crate::gateway::core::Gateway;
use crate::job::JobResult;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// The job's queue [default: `default`].
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^{}=\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub queue: Option<String>,
}

/// The job's result: final (`succeeded`, `dead`) or its latest attempt's
/// (`retrying`).
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), JobQuery),
    responses(
        (status = 200, description = "The result document", body = JobResult),
        (status = 400, description = "Bad queue name", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The token may not read results, or not of this queue", body = ErrorBody),
        (status = 404, description = "No result: still queued or running, expired, or unknown", body = ErrorBody),
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
    match gw.producer.result_text(&queue, &id).await? {
        Some(raw) => Ok(([(header::CONTENT_TYPE, "application/json")], raw).into_response()),
        None => Err(ApiError::NotFound(format!(
            "job {id} has no result in queue `{queue}`: it is still queued or running, its result expired, or the id is unknown"
        ))),
    }
}
