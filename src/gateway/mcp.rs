//! The gateway as an MCP server (streamable HTTP at `/mcp`): `tools/list`
//! is the catalog the token may use, `tools/call` is a durable job whose
//! result comes back as the call's result. A client that cancels the call
//! cancels its job: pending, it never runs; running, its worker stops it.
//! A client that asks for progress (a `progressToken`) hears the tool's
//! reports as `notifications/progress` while it waits.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler};
use serde_json::Value;

use super::api::ApiError;
use super::auth::Principal;
use super::core::{Call, Gateway, Reply};
use crate::config::DEFAULT_QUEUE;
use crate::job::JobResult;

#[derive(Clone)]
pub struct McpEndpoint {
    gateway: Arc<Gateway>,
}

impl McpEndpoint {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        McpEndpoint { gateway }
    }
}

/// The principal the auth middleware left on the HTTP request.
fn principal(context: &RequestContext<RoleServer>) -> Result<Principal, McpError> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| McpError::invalid_request("not authenticated", None))
}

/// A refusal the agent should read (a tool error), or a protocol error for
/// what the client cannot fix by changing arguments.
fn refused(e: ApiError) -> Result<CallToolResponse, McpError> {
    match e {
        ApiError::Unavailable(_) | ApiError::Internal(_) => {
            Err(McpError::internal_error(e.to_string(), None))
        }
        e => Ok(
            CallToolResult::error(vec![ContentBlock::text(format!("{}: {e}", e.kind()))]).into(),
        ),
    }
}

impl ServerHandler for McpEndpoint {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("toolq", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Every tool call runs as a durable toolq job: queued, retried, \
                 rate-limited and cached by a worker fleet.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let who = principal(&context)?;
        let catalog = self
            .gateway
            .catalog()
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        let tools = catalog
            .tools()
            .filter(|t| who.grant.may_use_tool(&t.entry.name))
            .map(|t| {
                let schema: JsonObject = match &t.entry.input_schema {
                    Value::Object(o) => o.clone(),
                    _ => JsonObject::new(),
                };
                Tool::new(t.entry.name.clone(), t.entry.description.clone(), schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let _in_flight = self.gateway.mcp_call();
        let who = principal(&context)?;
        let tool = request.name.to_string();
        let args = Value::Object(request.arguments.unwrap_or_default());
        let queue = DEFAULT_QUEUE.to_owned();
        let gw = &self.gateway;
        if let Err(e) = gw.authorize(&who, &tool, &queue) {
            return refused(e);
        }
        if let Err(e) = gw.admit(&who).await {
            return refused(e);
        }
        if let Err(e) = gw.check(&tool, &args).await {
            return refused(e);
        }
        // The id is chosen here so progress can be read while the job runs.
        let id = uuid::Uuid::now_v7().to_string();
        let call = Call {
            tool,
            args,
            queue: queue.clone(),
            timeout_ms: None,
            max_attempts: None,
            id: Some(id.clone()),
            meta: None,
        };
        let wait = gw.wait_for(&who, Some(gw.serve.max_wait_ms));
        let submitted = gw.submit(call, wait, context.ct.cancelled());
        let reply = match context.meta.get_progress_token() {
            None => submitted.await,
            Some(token) => {
                tokio::pin!(submitted);
                tokio::select! {
                    r = &mut submitted => r,
                    // Forwarding ends only when the client is gone.
                    () = forward_progress(gw, &queue, &id, token, &context.peer) => submitted.await,
                }
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return refused(e),
        };
        if let (Reply::Pending { id }, true) = (&reply, context.ct.is_cancelled()) {
            // The client cancelled the call: so is its job.
            if let Err(e) = gw.producer.cancel(DEFAULT_QUEUE, id).await {
                tracing::warn!(job_id = %id, error = %e, "gateway.mcp: could not cancel the job of a cancelled call");
            }
        }
        Ok(match reply {
            Reply::Finished { raw, .. } => result_of(&raw),
            Reply::Pending { id } => CallToolResult::error(vec![ContentBlock::text(format!(
                "job {id} has not finished yet; its result will be at GET /jobs/{id}"
            ))]),
        }
        .into())
    }
}

/// How often a waiting call reads its job's progress. The worker stores at
/// most one report per job every 250 ms, so reading faster sees nothing new.
const PROGRESS_POLL: Duration = Duration::from_millis(250);

/// Sends the job's progress reports to the client until dropped (when the
/// call's wait ends) or the client cannot be reached. Progress is read from Redis, not signalled: only calls
/// that asked for it pay, a read each 250 ms. A report that goes backwards
/// (a retry starting over) is not sent, since MCP progress only increases.
async fn forward_progress(
    gw: &Gateway,
    queue: &str,
    id: &str,
    token: ProgressToken,
    peer: &Peer<RoleServer>,
) {
    let mut sent: Option<(f64, String)> = None;
    let mut tick = tokio::time::interval(PROGRESS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(Some(p)) = gw.producer.progress(queue, id).await else {
            continue;
        };
        let new = match &sent {
            None => true,
            Some((fraction, message)) => {
                p.fraction > *fraction || (p.fraction == *fraction && p.message != *message)
            }
        };
        if !new {
            continue;
        }
        let note = ProgressNotificationParam::new(token.clone(), p.fraction)
            .with_total(1.0)
            .with_message(p.message.clone());
        if peer.notify_progress(note).await.is_err() {
            return;
        }
        sent = Some((p.fraction, p.message));
    }
}

/// A result document as an MCP tool result: the output (structured when it
/// is an object), or the job's error as a tool error.
fn result_of(raw: &str) -> CallToolResult {
    let Ok(doc) = serde_json::from_str::<JobResult>(raw) else {
        return CallToolResult::error(vec![ContentBlock::text(raw.to_owned())]);
    };
    if doc.status == "succeeded" {
        let output = doc.output.unwrap_or(Value::Null);
        let text = match &output {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        if output.is_object() {
            result.structured_content = Some(output);
        }
        result
    } else {
        let message = match doc.error {
            Some(e) => format!("{}: {}", e.kind, e.message),
            None => format!("job {} ended {}", doc.id, doc.status),
        };
        CallToolResult::error(vec![ContentBlock::text(message)])
    }
}
