//! Tools: the work a job names. A tool validates its own arguments and returns
//! JSON or a [`ToolError`] that says whether a retry can help. Each call gets
//! its job's [`JobContext`] (id, attempt, queue, progress).
//!
//! Tools know nothing of Redis or the worker: caching, rate limiting, timeouts
//! and retries wrap a tool call from the outside (see `worker::executor`).

mod calculator;
pub mod catalog;
mod clock;
mod context;
mod echo;
mod fail;
pub mod http;
pub mod mcp;
pub mod rate;
mod registry;
pub mod schema;
pub mod scrub;
pub mod secret;
mod setup;
mod sleep;
#[cfg(feature = "test-tools")]
pub mod testing;
pub mod weather;

#[cfg(feature = "test-tools")]
pub(crate) use calculator::measure as calculator_measure;
pub use calculator::Calculator;
pub use clock::{unix_us, Clock};
pub use context::{JobContext, ProgressSink, MAX_PROGRESS_MESSAGE_CHARS};
pub use echo::Echo;
pub use fail::Fail;
pub use rate::RateLimit;
pub use registry::Registry;
pub use scrub::Scrubber;
pub use secret::Secret;
pub use setup::{configured_registry, ToolSettings, ToolsConfig};
pub use sleep::Sleep;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

/// Per-attempt limit for tools that do not choose their own.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a tool call failed, and whether trying again could succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong: a retry would fail the same way.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The call failed for good (e.g. HTTP 4xx, division by zero).
    #[error("{0}")]
    Permanent(String),
    /// A later attempt may succeed (timeout, network error, HTTP 5xx).
    /// `retry_after` overrides the backoff when the remote said when to
    /// come back (HTTP 429 `Retry-After`).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl ToolError {
    /// A retryable error with the default backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        ToolError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with its message passed through `f` (masking secrets).
    pub fn map_message(self, f: impl Fn(String) -> String) -> Self {
        match self {
            ToolError::InvalidArgs(m) => ToolError::InvalidArgs(f(m)),
            ToolError::Permanent(m) => ToolError::Permanent(f(m)),
            ToolError::Retryable {
                message,
                retry_after,
            } => ToolError::Retryable {
                message: f(message),
                retry_after,
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ToolError::Retryable { .. })
    }

    /// The `kind` written into results and dead entries.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::InvalidArgs(_) => "invalid_args",
            ToolError::Permanent(_) => "permanent",
            ToolError::Retryable { .. } => "retryable",
        }
    }
}

/// A named unit of work. Implementations must be cheap to share: one instance
/// serves every job of the process concurrently.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name jobs use in their `tool` field.
    fn name(&self) -> &str;

    /// Checks `args` before any attempt runs, so bad input is dead at once
    /// instead of burning retries. The default accepts anything.
    fn validate(&self, _args: &Value) -> Result<(), ToolError> {
        Ok(())
    }

    /// Runs the tool once for the job `cx` describes (its id, attempt and
    /// queue; [`JobContext::progress`] reports how far it has come). The
    /// caller enforces the timeout. A tool whose behaviour depends on the
    /// attempt reads it here rather than keeping state, which would be wrong
    /// across retries landing on different workers.
    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError>;

    /// Per-attempt limit when the job does not set `timeout_ms`.
    fn timeout(&self) -> Duration {
        DEFAULT_TOOL_TIMEOUT
    }

    /// Total tries when neither the job nor the configuration says otherwise.
    fn max_attempts(&self) -> Option<u32> {
        None
    }

    /// When set, successful outputs are cached in Redis for this long, keyed
    /// by the tool name and a digest of the normalised arguments.
    fn cache_ttl(&self) -> Option<Duration> {
        None
    }

    /// What the tool does, for the catalog (`toolq tools`, the gateway).
    fn description(&self) -> String {
        String::new()
    }

    /// The JSON Schema of `args`, published in the catalog, where producers
    /// check jobs against it before enqueueing. The default accepts any
    /// object.
    fn input_schema(&self) -> Value {
        serde_json::json!({"type": "object"})
    }

    /// Where the tool comes from, for the catalog: `builtin`, `rust` (a
    /// program registered it), `mcp` or `http`.
    fn source(&self) -> &'static str {
        "rust"
    }

    /// Whether a job recovered from a worker that died holding it may run
    /// again. A tool with side effects that must not happen twice says no:
    /// such a job ends dead (kind `interrupted`) for an operator to retry.
    fn redeliver(&self) -> bool {
        true
    }

    /// The secrets this tool was configured with (an API key, a token in a
    /// header). The worker takes them, and those of every other tool, out of
    /// every output and error before anything is stored (see [`Scrubber`]):
    /// an API may echo a key back where the tool cannot see it.
    fn secrets(&self) -> Vec<Secret> {
        Vec::new()
    }
}
