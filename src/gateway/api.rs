//! The gateway's wire types and its one error type. Every type here is in
//! the OpenAPI document (`openapi`), so the document cannot drift from what
//! the handlers send.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::producer::ProducerError;
use crate::queue::QueueError;

/// A queue name as the API accepts it (`routes::queue_of` checks the same).
/// Repeated as a literal in the `#[schema]`/`#[param]` attributes (they
/// take no constants); `openapi`'s test checks every copy against this.
pub const QUEUE_PATTERN: &str = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$";

/// `POST /execute`: one tool call, run as a durable job.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    /// The tool to run, as `GET /tools` lists it.
    #[schema(min_length = 1, pattern = r"\S")]
    pub tool: String,
    /// The tool's arguments (checked against its input schema).
    #[schema(value_type = Object)]
    pub args: Value,
    /// Queue to enqueue on [default: `default`].
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^{}=#\s\x00-\x1f\x7f-\x9f]+$"
    )]
    pub queue: Option<String>,
    /// Per-attempt limit, milliseconds.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    /// How long to wait for the result before answering 202; 0 answers at
    /// once. Capped by the server's `max_wait_ms`.
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// Total tries before the job is dead.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// Your own job id (UUIDv7 when absent).
    #[serde(default)]
    #[schema(min_length = 1)]
    pub id: Option<String>,
    /// Free-form data copied into the result.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

/// One job of `POST /batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    #[schema(min_length = 1, pattern = r"\S")]
    pub tool: String,
    #[schema(value_type = Object)]
    pub args: Value,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    #[schema(min_length = 1)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

/// A job that has not finished (yet): `202` from `POST /execute`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pending {
    pub id: String,
    /// Always `pending`.
    pub status: String,
}

/// `GET /jobs/{id}` for a job that has no final result yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStatus {
    pub id: String,
    pub queue: String,
    /// `pending`, `scheduled`, `running` or `retrying`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: Option<u32>,
    /// When a scheduled or retrying job is due (unix ms).
    pub due_at: Option<u64>,
    /// The worker running it.
    pub worker: Option<String>,
    /// The latest progress its tool reported, if it reported any.
    pub progress: Option<crate::job::Progress>,
}

/// One NDJSON line of `POST /batch`: the job's position in the request and
/// its result document (or its id and `pending` if the stream's time ran
/// out first).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchLine {
    pub index: usize,
    pub id: String,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// A tool of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's arguments.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// `builtin`, `rust`, `mcp:<server>` or `http`.
    pub source: String,
    /// How many live workers serve it.
    pub workers: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolList {
    pub tools: Vec<ToolInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `down` when Redis does not answer.
    pub status: String,
    pub redis: String,
    pub version: String,
    /// Live workers that published a tool catalog.
    pub workers: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unknown_tool`, `invalid_args`,
    /// `unauthorized`, `forbidden`, `not_found`, `rate_limited`,
    /// `too_large`, `unavailable`, `internal`.
    pub kind: String,
    pub message: String,
}

/// Every error response: `{"error": {"kind", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Everything a request can fail with; each maps to one status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnknownTool(String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("rate limit of this token reached; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("{0}")]
    TooLarge(String),
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::UnknownTool(_) => (StatusCode::BAD_REQUEST, "unknown_tool"),
            ApiError::InvalidArgs(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_args"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.status_and_kind().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let body = ErrorBody {
            error: ErrorDetail {
                kind: kind.into(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_s } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        // Out of memory passes once memory frees, like an outage: 503.
        if e.is_unavailable() || e.is_out_of_memory() {
            ApiError::Unavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<ProducerError> for ApiError {
    fn from(e: ProducerError) -> Self {
        match e {
            ProducerError::Queue(q) => q.into(),
            ProducerError::InvalidJob(m) => ApiError::BadRequest(m),
            ProducerError::Duplicate { .. } => ApiError::BadRequest(e.to_string()),
            ProducerError::Refused(m) => ApiError::BadRequest(m),
            ProducerError::PartlyEnqueued(p) => ApiError::Unavailable(p.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}
