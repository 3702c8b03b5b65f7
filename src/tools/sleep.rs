//! `sleep`: waits `ms` milliseconds and returns. Used by tests and demos to
//! hold a concurrency slot, exercise timeouts and graceful shutdown.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{JobContext, Tool, ToolError};

/// Longest sleep accepted: one hour, well past any sensible test.
pub const MAX_SLEEP_MS: u64 = 3_600_000;

/// The built-in `sleep` tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sleep;

#[async_trait]
impl Tool for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        millis(args).map(drop)
    }

    fn description(&self) -> String {
        "Sleeps `ms` milliseconds (a diagnostic tool for tests and demos).".into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS}},
            "required": ["ms"]
        })
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        let ms = millis(args)?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "slept_ms": ms }))
    }

    /// Longer than the longest sleep, so a job's own `timeout_ms` is what
    /// cuts a sleep short, and a job without one always finishes.
    fn timeout(&self) -> Duration {
        Duration::from_millis(MAX_SLEEP_MS) + Duration::from_secs(60)
    }
}

fn millis(args: &Value) -> Result<u64, ToolError> {
    args.get("ms")
        .and_then(Value::as_u64)
        .filter(|&ms| ms <= MAX_SLEEP_MS)
        .ok_or_else(|| {
            ToolError::InvalidArgs(format!("'ms' must be an integer from 0 to {MAX_SLEEP_MS}"))
        })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn cx() -> JobContext<'static> {
        JobContext::new("test", 0, "default")
    }

    #[tokio::test]
    async fn sleeps_for_the_given_time() {
        let start = Instant::now();
        assert_eq!(
            Sleep.call(&json!({"ms": 20}), cx()).await,
            Ok(json!({"slept_ms": 20}))
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(
            Sleep.call(&json!({"ms": 0}), cx()).await,
            Ok(json!({"slept_ms": 0}))
        );
    }

    #[test]
    fn accepts_the_full_range() {
        assert_eq!(Sleep.validate(&json!({"ms": MAX_SLEEP_MS})), Ok(()));
        assert!(Sleep.timeout() > Duration::from_millis(MAX_SLEEP_MS));
    }

    #[tokio::test]
    async fn rejects_bad_durations() {
        let cases = [
            json!({}),
            json!({"ms": -1}),
            json!({"ms": 1.5}),
            json!({"ms": "10"}),
            json!({"ms": MAX_SLEEP_MS + 1}),
            json!([10]),
        ];
        for args in cases {
            assert!(
                matches!(Sleep.validate(&args), Err(ToolError::InvalidArgs(_))),
                "{args}"
            );
            let err = Sleep.call(&args, cx()).await.unwrap_err();
            assert!(
                err.to_string().contains("'ms' must be an integer"),
                "{args}"
            );
        }
    }
}
