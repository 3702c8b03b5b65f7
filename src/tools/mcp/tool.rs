//! An MCP server's tool as a toolq [`Tool`]: arguments checked against its
//! `inputSchema` before anything is sent, the call bounded by the job's
//! timeout (dropping the call sends the server a cancellation), and the
//! result turned into the job's output: `structuredContent` when present,
//! otherwise the `content` list (text, image, resource blocks as MCP sends
//! them). `isError: true` fails the attempt, permanently unless the server
//! is configured `retry_on_error`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rmcp::model::CallToolResult;
use serde_json::Value;

use super::server::McpServer;
use crate::tools::schema::ArgsSchema;
use crate::tools::{JobContext, Tool, ToolError};

pub struct McpTool {
    /// The name jobs use: `<server>.<tool>` or the configured prefix.
    job_name: String,
    /// The name the server knows it by.
    remote: String,
    description: String,
    schema: ArgsSchema,
    server: Arc<McpServer>,
    /// False when the server marks the tool not idempotent
    /// (`idempotentHint: false`) or the configuration says `redeliver = false`.
    redeliver: bool,
}

impl McpTool {
    /// `None` (with a warning) when the server's schema does not compile.
    pub fn new(server: Arc<McpServer>, remote: &rmcp::model::Tool) -> Option<McpTool> {
        let schema = Value::Object((*remote.input_schema).clone());
        let job_name = server.config.job_name(&server.name, &remote.name);
        let schema = match ArgsSchema::compile(schema) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(server = %server.name, tool = %remote.name, error = %e,
                    "skipping an MCP tool whose input schema does not compile");
                return None;
            }
        };
        let hinted_once = remote
            .annotations
            .as_ref()
            .and_then(|a| a.idempotent_hint)
            .is_some_and(|idempotent| !idempotent);
        Some(McpTool {
            redeliver: server.config.redeliver && !hinted_once,
            job_name,
            remote: remote.name.to_string(),
            description: remote.description.as_deref().unwrap_or_default().to_owned(),
            schema,
            server,
        })
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.job_name
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        self.schema.check(args)
    }

    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        let result = self.server.call(&self.remote, args, cx).await?;
        output(
            result,
            &self.server.name,
            self.server.config.max_result_bytes,
            self.server.config.retry_on_error,
        )
    }

    fn timeout(&self) -> Duration {
        self.server.config.call_timeout()
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn input_schema(&self) -> Value {
        self.schema.schema().clone()
    }

    fn source(&self) -> &'static str {
        "mcp"
    }

    fn redeliver(&self) -> bool {
        self.redeliver
    }
}

/// The job's output, or the error the result stands for.
fn output(
    result: CallToolResult,
    server: &str,
    max_bytes: usize,
    retry_on_error: bool,
) -> Result<Value, ToolError> {
    let is_error = result.is_error == Some(true);
    let value = match result.structured_content {
        Some(v) if !is_error => v,
        _ => serde_json::to_value(&result.content)
            .map_err(|e| ToolError::Permanent(format!("unreadable MCP result: {e}")))?,
    };
    if is_error {
        let message = format!("MCP tool failed: {}", text_of(&value));
        return Err(match retry_on_error {
            true => ToolError::retryable(message),
            false => ToolError::Permanent(message),
        });
    }
    let size = value.to_string().len();
    if size > max_bytes {
        return Err(ToolError::Permanent(format!(
            "MCP server `{server}` returned {size} bytes, over the {max_bytes}-byte limit (max_result_bytes)"
        )));
    }
    Ok(value)
}

/// The text blocks of a content list, joined (what an error result says).
fn text_of(content: &Value) -> String {
    let texts: Vec<&str> = content
        .as_array()
        .map(|blocks| blocks.iter().filter_map(|b| b["text"].as_str()).collect())
        .unwrap_or_default();
    match texts.is_empty() {
        true => content.to_string(),
        false => texts.join("\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: Value) -> CallToolResult {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn structured_content_wins_then_the_content_list() {
        let r = result(
            json!({"content": [{"type": "text", "text": "5"}], "structuredContent": {"sum": 5}}),
        );
        assert_eq!(output(r, "s", 1000, false).unwrap(), json!({"sum": 5}));
        let r = result(json!({"content": [{"type": "text", "text": "hi"}]}));
        assert_eq!(
            output(r, "s", 1000, false).unwrap(),
            json!([{"type": "text", "text": "hi"}])
        );
    }

    #[test]
    fn an_error_result_fails_permanently_unless_configured_and_size_is_capped() {
        let err =
            || result(json!({"content": [{"type": "text", "text": "boom"}], "isError": true}));
        let e = output(err(), "s", 1000, false).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            ("permanent", "MCP tool failed: boom".to_owned())
        );
        assert!(output(err(), "s", 1000, true).unwrap_err().is_retryable());
        let big = result(json!({"content": [{"type": "text", "text": "x".repeat(2000)}]}));
        let e = output(big, "s", 1000, false).unwrap_err().to_string();
        assert!(e.contains("over the 1000-byte limit"), "{e}");
    }
}
