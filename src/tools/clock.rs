//! `clock`: returns the time it ran, in unix microseconds. The benchmark
//! enqueues it with its own timestamp to measure enqueue→start latency below
//! the millisecond resolution of results' `started_at`.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{JobContext, Tool, ToolError};

/// The built-in `clock` tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

/// Microseconds since the Unix epoch by this machine's clock.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl Tool for Clock {
    fn name(&self) -> &str {
        "clock"
    }

    async fn call(&self, _args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        Ok(json!({ "unix_us": unix_us() }))
    }

    fn description(&self) -> String {
        "Returns the worker's clock in microseconds (for latency measurements).".into()
    }

    fn source(&self) -> &'static str {
        "builtin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_the_current_time() {
        let before = unix_us();
        let out = Clock
            .call(&json!({}), JobContext::new("test", 0, "default"))
            .await
            .unwrap();
        let at = out["unix_us"].as_u64().unwrap();
        assert!(at >= before && at <= unix_us());
    }
}
