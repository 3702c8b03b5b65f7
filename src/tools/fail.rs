//! `fail`: fails on purpose, to exercise retries and the dead set.
//! `{"times": N}` fails with a retryable error on the first N attempts and
//! then succeeds; `{"permanent": true}` fails for good at once. It keeps no
//! state: the attempt number comes from the worker, in its
//! [`JobContext`], so it behaves the same on any worker.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{JobContext, Tool, ToolError};

/// The built-in `fail` tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fail;

#[async_trait]
impl Tool for Fail {
    fn name(&self) -> &str {
        "fail"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        Plan::from_args(args).map(drop)
    }

    fn description(&self) -> String {
        "Fails on purpose: the first `times` attempts (retryably), or for good with `permanent`."
            .into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"times": {"type": "integer", "minimum": 0}, "permanent": {"type": "boolean"}}
        })
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        let attempt = cx.attempt();
        let plan = Plan::from_args(args)?;
        if plan.permanent {
            return Err(ToolError::Permanent(
                "failing on purpose (permanent)".to_owned(),
            ));
        }
        if attempt < plan.times {
            // Shown 1-based: "attempt 1 of 3" is the first of three failures.
            return Err(ToolError::retryable(format!(
                "failing on purpose: attempt {} of {}",
                u64::from(attempt) + 1,
                plan.times
            )));
        }
        Ok(json!({ "succeeded_after": plan.times }))
    }
}

struct Plan {
    times: u32,
    permanent: bool,
}

impl Plan {
    fn from_args(args: &Value) -> Result<Self, ToolError> {
        let invalid = |message: &str| ToolError::InvalidArgs(message.to_owned());
        let args = args
            .as_object()
            .ok_or_else(|| invalid("arguments must be a JSON object"))?;
        let permanent = match args.get("permanent") {
            None => false,
            Some(Value::Bool(permanent)) => *permanent,
            Some(_) => return Err(invalid("'permanent' must be true or false")),
        };
        let times = match args.get("times") {
            None if permanent => 0,
            None => {
                return Err(invalid(
                    "expected 'times' (how many attempts fail) or 'permanent': true",
                ))
            }
            Some(times) => times
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| invalid("'times' must be a non-negative integer"))?,
        };
        Ok(Plan { times, permanent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(attempt: u32) -> JobContext<'static> {
        JobContext::new("test", attempt, "default")
    }

    #[tokio::test]
    async fn fails_the_first_n_attempts_then_succeeds() {
        let args = json!({"times": 2});
        for attempt in 0..2 {
            let err = Fail.call(&args, cx(attempt)).await.unwrap_err();
            assert!(err.is_retryable());
            let expected = format!("failing on purpose: attempt {} of 2", attempt + 1);
            assert_eq!(err.to_string(), expected);
        }
        let output = Fail.call(&args, cx(2)).await;
        assert_eq!(output, Ok(json!({"succeeded_after": 2})));
    }

    #[tokio::test]
    async fn the_first_attempt_is_zero() {
        assert!(Fail
            .call(&json!({"times": 1}), cx(0))
            .await
            .unwrap_err()
            .is_retryable());
        assert_eq!(
            Fail.call(&json!({"times": 0}), cx(0)).await,
            Ok(json!({"succeeded_after": 0}))
        );
    }

    #[tokio::test]
    async fn permanent_failure_ignores_attempts() {
        for args in [
            json!({"permanent": true}),
            json!({"permanent": true, "times": 0}),
        ] {
            let err = Fail.call(&args, cx(5)).await.unwrap_err();
            assert_eq!(
                err,
                ToolError::Permanent("failing on purpose (permanent)".to_owned())
            );
        }
    }

    #[tokio::test]
    async fn rejects_bad_arguments() {
        let cases = [
            json!({}),
            json!({"permanent": false}),
            json!({"times": -1}),
            json!({"times": 1.5}),
            json!({"times": "3"}),
            json!({"times": u64::from(u32::MAX) + 1}),
            json!({"permanent": "yes"}),
            json!(3),
        ];
        for args in cases {
            assert!(
                matches!(Fail.validate(&args), Err(ToolError::InvalidArgs(_))),
                "{args}"
            );
            let err = Fail.call(&args, cx(0)).await.unwrap_err();
            assert!(matches!(err, ToolError::InvalidArgs(_)), "{args}");
        }
    }
}
