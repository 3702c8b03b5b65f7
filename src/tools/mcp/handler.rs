//! What toolq answers when an MCP server asks something of its client. A
//! worker runs tools unattended: it has no model to sample, no user to ask
//! and no roots to offer, so such requests get a clear error (sampling is
//! refused by rmcp's default as "method not found"; elicitation is
//! declined). A `tools/list_changed` notification makes the server list
//! its tools again; `notifications/progress` goes to the call whose
//! progress token it names (see `server::McpServer::call`).

use std::sync::Arc;

use rmcp::handler::client::progress::ProgressDispatcher;
#[allow(deprecated)]
use rmcp::model::ListRootsResult;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use rmcp::{ClientHandler, ErrorData};
use tokio::sync::Notify;

pub struct Handler {
    server: String,
    /// Signalled on `notifications/tools/list_changed`.
    pub relist: Arc<Notify>,
    /// Routes progress notifications to the call awaiting them, by token.
    pub progress: ProgressDispatcher,
}

impl Handler {
    pub fn new(server: String, relist: Arc<Notify>) -> Self {
        Handler {
            server,
            relist,
            progress: ProgressDispatcher::new(),
        }
    }
}

#[allow(deprecated)]
impl ClientHandler for Handler {
    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        tracing::warn!(server = %self.server, "MCP server asked for roots; toolq offers none");
        Err(ErrorData::invalid_request(
            "toolq runs tools as background jobs and offers no roots",
            None,
        ))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.handle_notification(params).await;
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(server = %self.server, "MCP server's tools changed; listing them again");
        self.relist.notify_one();
    }
}
