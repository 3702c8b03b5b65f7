//! `POST /execute`: one call, answered with its result (200) or, when the
//! wait ends first, with its id and where to find the result (202).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::{json_body, meta_of, queue_of};
use crate::gateway::api::{ApiError, ErrorBody, ExecuteRequest, Pending};
use crate::gateway::auth::Principal;
use crate::gateway::core::{Call, Gateway, Reply};
use crate::job::JobResult;

/// Runs a tool as a durable job and waits up to `wait_ms` for its result.
#[utoipa::path(post, path = "/execute", tag = "jobs",
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "The job finished: its result document (`succeeded` or `dead`)", body = JobResult),
        (status = 202, description = "Still running; the result will be at `Location`", body = Pending,
            headers(("Location" = String, description = "/jobs/{id}?queue={queue}"))),
        (status = 400, description = "Bad JSON or an unknown tool", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 403, description = "The token may not use this tool or queue", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Arguments fail the tool's schema", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 503, description = "Redis unavailable", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn execute(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ExecuteRequest = json_body(body)?;
    let queue = queue_of(request.queue)?;
    let meta = meta_of(request.meta)?;
    gw.authorize(&who, &request.tool, &queue)?;
    gw.admit(&who).await?;
    gw.check(&request.tool, &request.args).await?;
    let wait = gw.wait_for(&who, request.wait_ms);
    let call = Call {
        tool: request.tool,
        args: request.args,
        queue: queue.clone(),
        timeout_ms: request.timeout_ms,
        max_attempts: request.max_attempts,
        id: request.id,
        meta,
    };
    Ok(match gw.submit(call, wait, std::future::pending()).await? {
        Reply::Finished { raw, .. } => {
            ([(header::CONTENT_TYPE, "application/json")], raw).into_response()
        }
        Reply::Pending { id } => pending(&queue, id),
    })
}

pub fn pending(queue: &str, id: String) -> Response {
    let location = format!("/jobs/{}?queue={}", encode(&id), encode(queue));
    let mut response = (
        StatusCode::ACCEPTED,
        Json(Pending {
            id,
            status: "pending".into(),
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
