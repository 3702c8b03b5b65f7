//! Test fixtures, not tools for production: compiled in only with the
//! `test-tools` cargo feature (which the test suite turns on), and then
//! registered only when the environment sets `TOOLQ_ENABLE_TEST_TOOLS=1`, so
//! the fault tests (`tests/faults.rs`) can drive real `toolq worker`
//! processes.
//!
//! - `crash`: aborts the whole process, like a job that segfaults or gets its
//!   worker OOM-killed. It is how the tests make a poison job.
//! - `count`: `{"key": "...", "ms": N}` increments `key` in Redis and then
//!   sleeps `N` ms, returning `{"executions": n}`. Each job counts its own
//!   executions where the test can read them, so "lost" (count 0) and
//!   "duplicate" (count > 1) are facts in Redis, not guesses from logs.
//! - `progress`: `{"steps": N, "ms": T, "fail_first": K}` reports progress N
//!   times, evenly over T ms ("step i of N"), fails retryably on its first
//!   K attempts, then returns the context it was given: `{"id", "attempt",
//!   "queue", "steps"}`. With many steps and a short T it is the chatty
//!   tool the rate limit is for.
//!
//! `count` breaks the rule that tools know nothing of Redis on purpose: it
//! records a side effect outside the queue, as a real tool writing to a
//! database would. It uses a connection of its own, built from
//! `TOOLQ_REDIS_URL`, never the worker's.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::{JobContext, Registry, Tool, ToolError};

/// Set to `1` to register the fixtures.
pub const ENABLE_ENV: &str = "TOOLQ_ENABLE_TEST_TOOLS";
/// Where `count` records executions.
pub const REDIS_URL_ENV: &str = "TOOLQ_REDIS_URL";
/// Where `count` records executions instead, when set: a ledger apart from
/// the queue's Redis (a failover test must not lose its own counts).
pub const COUNT_URL_ENV: &str = "TOOLQ_TEST_COUNT_URL";
/// Longest sleep `count` accepts.
const MAX_MS: u64 = 600_000;
/// Short, so an outage fails the attempt (and the job is retried) instead of
/// hanging it.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the environment asks for the fixtures.
pub fn enabled() -> bool {
    std::env::var(ENABLE_ENV).is_ok_and(|v| v == "1")
}

/// Adds `crash` and `count` to `registry`.
pub fn register(registry: &mut Registry) {
    let url = std::env::var(COUNT_URL_ENV)
        .or_else(|_| std::env::var(REDIS_URL_ENV))
        .unwrap_or_else(|_| crate::config::DEFAULT_REDIS_URL.to_owned());
    registry
        .register(Crash)
        .register(Count::new(url))
        .register(Steps);
}

/// Kills the process running it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crash;

#[async_trait]
impl Tool for Crash {
    fn name(&self) -> &str {
        "crash"
    }

    async fn call(&self, _args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        std::process::abort()
    }
}

/// Counts its executions in Redis, then sleeps.
pub struct Count {
    url: String,
    conn: OnceCell<ConnectionManager>,
}

impl Count {
    pub fn new(url: String) -> Self {
        Count {
            url,
            conn: OnceCell::new(),
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, ToolError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str())
                    .map_err(|e| ToolError::Permanent(format!("count: bad redis url: {e}")))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(REDIS_TIMEOUT))
                    .set_response_timeout(Some(REDIS_TIMEOUT))
                    .set_number_of_retries(1);
                client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| ToolError::retryable(format!("count: redis: {e}")))
            })
            .await?;
        Ok(conn.clone())
    }
}

#[async_trait]
impl Tool for Count {
    fn name(&self) -> &str {
        "count"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        parse(args).map(drop)
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        let (key, ms) = parse(args)?;
        let mut conn = self.conn().await?;
        let n: u64 = redis::cmd("INCR")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| ToolError::retryable(format!("count: redis: {e}")))?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "executions": n }))
    }
}

/// Reports progress in steps, then returns its context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps;

/// Most steps `progress` takes.
const MAX_STEPS: u64 = 1_000_000;

#[async_trait]
impl Tool for Steps {
    fn name(&self) -> &str {
        "progress"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        steps_args(args).map(drop)
    }

    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        let (steps, ms, fail_first) = steps_args(args)?;
        let start = tokio::time::Instant::now();
        for i in 1..=steps {
            cx.progress(i as f64 / steps as f64, &format!("step {i} of {steps}"));
            let due = start + Duration::from_millis(ms * i / steps);
            match due > tokio::time::Instant::now() {
                true => tokio::time::sleep_until(due).await,
                false => tokio::task::yield_now().await,
            }
        }
        if u64::from(cx.attempt()) < fail_first {
            return Err(ToolError::retryable(format!(
                "failing on purpose: attempt {} of job {} on queue {}",
                cx.attempt(),
                cx.id(),
                cx.queue()
            )));
        }
        Ok(json!({"id": cx.id(), "attempt": cx.attempt(), "queue": cx.queue(), "steps": steps}))
    }
}

fn steps_args(args: &Value) -> Result<(u64, u64, u64), ToolError> {
    let field = |name: &str, max: u64| match args.get(name) {
        None => Ok(0),
        Some(v) => v.as_u64().filter(|&n| n <= max).ok_or_else(|| {
            ToolError::InvalidArgs(format!("'{name}' must be an integer from 0 to {max}"))
        }),
    };
    Ok((
        field("steps", MAX_STEPS)?,
        field("ms", MAX_MS)?,
        field("fail_first", 100)?,
    ))
}

fn parse(args: &Value) -> Result<(&str, u64), ToolError> {
    let key = args
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ToolError::InvalidArgs("'key' must be a non-empty string".into()))?;
    let ms = match args.get("ms") {
        None => 0,
        Some(v) => v.as_u64().filter(|&ms| ms <= MAX_MS).ok_or_else(|| {
            ToolError::InvalidArgs(format!("'ms' must be an integer from 0 to {MAX_MS}"))
        })?,
    };
    Ok((key, ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_checks_its_arguments() {
        let count = Count::new("redis://127.0.0.1:1".into());
        assert_eq!(count.validate(&json!({"key": "k", "ms": 5})), Ok(()));
        assert_eq!(count.validate(&json!({"key": "k"})), Ok(()));
        for bad in [
            json!({}),
            json!({"key": ""}),
            json!({"key": 1}),
            json!({"key": "k", "ms": -1}),
            json!({"key": "k", "ms": MAX_MS + 1}),
        ] {
            assert!(
                matches!(count.validate(&bad), Err(ToolError::InvalidArgs(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn fixtures_register_under_their_names() {
        let mut registry = Registry::new();
        register(&mut registry);
        assert_eq!(registry.names(), ["count", "crash", "progress"]);
    }
}
