//! `echo`: returns its arguments unchanged. Throughput benchmarks run it to
//! measure the queue and worker rather than any tool, so the only cost it
//! adds is the one clone needed to hand the value back.

use async_trait::async_trait;
use serde_json::Value;

use super::{JobContext, Tool, ToolError};

/// The built-in `echo` tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

#[async_trait]
impl Tool for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        if args.is_object() {
            Ok(())
        } else {
            Err(ToolError::InvalidArgs(
                "arguments must be a JSON object".to_owned(),
            ))
        }
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        Ok(args.clone())
    }

    fn description(&self) -> String {
        "Returns its arguments (a diagnostic tool for tests, demos and benchmarks).".into()
    }

    fn source(&self) -> &'static str {
        "builtin"
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cx() -> JobContext<'static> {
        JobContext::new("test", 0, "default")
    }

    #[tokio::test]
    async fn returns_its_arguments() {
        let args = json!({"a": [1, 2.5, null], "nested": {"s": "x"}});
        assert_eq!(Echo.validate(&args), Ok(()));
        assert_eq!(Echo.call(&args, cx()).await, Ok(args));
        assert_eq!(Echo.call(&json!({}), cx()).await, Ok(json!({})));
    }

    #[test]
    fn rejects_non_objects() {
        for args in [json!([1]), json!("x"), json!(null)] {
            assert!(matches!(
                Echo.validate(&args),
                Err(ToolError::InvalidArgs(_))
            ));
        }
    }
}
