//! Tools from MCP servers (Model Context Protocol), through the official Rust
//! SDK, `rmcp`. Each `[mcp.servers.<name>]` is a stdio server the worker
//! starts (`instances` processes of it), initialises and supervises
//! (`server`); each tool it lists becomes a toolq tool named
//! `<name>.<tool>` (`tool`), run as a durable job: retried, rate-limited,
//! recovered after crashes, observable. What the server may ask of toolq
//! is answered in `handler`; its progress notifications reach the job in
//! `progress`.

mod config;
mod handler;
mod progress;
mod server;
mod tool;

use std::sync::Arc;

pub use config::{McpConfig, McpServerConfig, DEFAULT_MAX_RESULT_BYTES};
pub use server::McpServer;
pub use tool::McpTool;

use super::{Registry, Tool};

/// The MCP servers of one worker.
#[derive(Default)]
pub struct McpServers {
    servers: Vec<Arc<McpServer>>,
    /// Tools listed after start-up (a late server, `tools/list_changed`),
    /// made on first use.
    late: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Tool>>>,
}

impl McpServers {
    /// Starts every configured server; waits for each to list its tools (or
    /// to fail to, in which case its jobs retry until it comes up).
    pub async fn start(config: &McpConfig) -> McpServers {
        let mut servers = Vec::new();
        for (name, c) in &config.servers {
            servers.push(McpServer::start(name.clone(), c.clone()).await);
        }
        McpServers {
            servers,
            late: Default::default(),
        }
    }

    /// A tool a server lists now but did not at start-up (it came up late,
    /// or its list changed): the registry was built before.
    pub fn find(&self, name: &str) -> Option<Arc<dyn Tool>> {
        if let Some(tool) = self.late.lock().ok().and_then(|l| l.get(name).cloned()) {
            return Some(tool);
        }
        let server = self
            .servers
            .iter()
            .find(|s| name.starts_with(&s.config.job_prefix(&s.name)))?;
        let remote = server.tool(&name[server.config.job_prefix(&server.name).len()..])?;
        let tool: Arc<dyn Tool> = Arc::new(McpTool::new(server.clone(), &remote)?);
        if let Ok(mut late) = self.late.lock() {
            late.insert(name.to_owned(), tool.clone());
        }
        tracing::info!(server = %server.name, tool = name, "serving an MCP tool listed after start-up");
        Some(tool)
    }

    /// Registers every listed tool, and each server's name prefix, so a job
    /// for a tool its server has not listed (yet) is retried, not buried.
    pub fn register(&self, registry: &mut Registry) {
        for server in &self.servers {
            registry.add_namespace(&server.config.job_prefix(&server.name), &server.name);
            for remote in server.tools() {
                if let Some(tool) = McpTool::new(server.clone(), &remote) {
                    tracing::info!(server = %server.name, tool = tool.name(), "serving MCP tool");
                    registry.register(tool);
                }
            }
        }
    }

    /// Each server's name and whether a process of it is up.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.servers
            .iter()
            .map(|s| (s.name.clone(), s.is_up()))
            .collect()
    }

    /// Stops every server's processes and waits for them.
    pub async fn shutdown(&self) {
        for server in &self.servers {
            server.shutdown().await;
        }
    }
}
