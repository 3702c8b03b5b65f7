//! The REST API, one file per resource. Each handler is annotated for the
//! OpenAPI document (`super::openapi`).

pub mod batch;
pub mod execute;
pub mod health;
pub mod jobs;
pub mod tools;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;

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

/// A `queue` from a request: a plain queue name.
pub fn queue_of(queue: Option<String>) -> Result<String, ApiError> {
    let queue = queue.unwrap_or_else(|| crate::config::DEFAULT_QUEUE.to_owned());
    let spec = crate::spec::QueueSpec::parse(&queue).map_err(ApiError::BadRequest)?;
    if spec.weight.is_some() {
        return Err(ApiError::BadRequest(format!(
            "queue {queue:?}: a weight only applies to workers"
        )));
    }
    Ok(spec.name)
}
