//! The REST API, one file per resource. Each handler is annotated for the
//! OpenAPI document (`super::openapi`).

pub mod batch;
pub mod execute;
pub mod health;
pub mod jobs;
pub mod queues;
pub mod tools;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::api::ApiError;

/// A JSON body, or the API's own 400/413 (axum's rejections are plain text).
pub fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(f)
            if f.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::TooLarge("request body is larger than serve.max_body_bytes".into())
        }
        e => ApiError::BadRequest(format!("cannot read the request body: {e}")),
    })
}

/// A `queue` from a request: exactly a queue name, as the OpenAPI pattern
/// says (1 to 100 characters; no braces, `=`, `#` (a shard's separator),
/// spaces or control characters); nothing is trimmed.
pub fn queue_of(queue: Option<String>) -> Result<String, ApiError> {
    let Some(queue) = queue else {
        return Ok(crate::config::DEFAULT_QUEUE.to_owned());
    };
    let length = queue.chars().count();
    let bad = |c: char| matches!(c, '{' | '}' | '=' | '#') || c.is_whitespace() || c.is_control();
    if !(1..=100).contains(&length) || queue.chars().any(bad) {
        return Err(ApiError::BadRequest(format!(
            "queue {queue:?}: a queue name is 1 to 100 characters without braces, `=`, `#`, spaces or control characters"
        )));
    }
    Ok(queue)
}

/// `meta` must be an object when given.
pub fn meta_of(meta: Option<Value>) -> Result<Option<Value>, ApiError> {
    match meta {
        Some(m) if !m.is_object() => {
            Err(ApiError::BadRequest("`meta` must be a JSON object".into()))
        }
        m => Ok(m),
    }
}

/// Query parameters, or the API's own 400 (axum's rejection is plain text).
pub fn query_of<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}
