//! `[mcp.servers.<name>]`: how to start one MCP server and how its tools are
//! exposed. Read by figment like every other section, so the same keys work
//! as `TOOLQ_MCP__SERVERS__<NAME>__<KEY>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default for `max_result_bytes`: a result larger than this fails the
/// attempt instead of filling Redis.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1024 * 1024;

/// `[mcp]`: the MCP servers whose tools this worker runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// One MCP server: a program started over stdio (`command`), or a
/// streamable-HTTP endpoint (`url`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program and its arguments, e.g. `["python3", "server.py"]`.
    pub command: Vec<String>,
    /// Extra environment for the server (on top of the worker's own).
    pub env: BTreeMap<String, String>,
    /// Working directory of the server; the worker's when absent.
    pub cwd: Option<PathBuf>,
    /// A streamable-HTTP server's endpoint, e.g. `http://host:3001/mcp`,
    /// instead of a `command`.
    pub url: Option<String>,
    /// Headers sent to a `url` server; a value written `env:NAME` or
    /// `file:PATH` is read from there (keep tokens out of the file).
    pub headers: BTreeMap<String, String>,
    /// Tools to expose (by the server's names); all when absent.
    pub tools: Option<Vec<String>>,
    /// What job tool names start with; `<server>.` when absent.
    pub prefix: Option<String>,
    /// Processes of this server to run; calls go to the least loaded.
    pub instances: usize,
    /// Calls in flight per process at most; the rest wait their turn.
    pub max_concurrency: usize,
    /// Per-call limit when the job sets no `timeout_ms`.
    pub call_timeout_ms: u64,
    /// Whether a result with `isError: true` may be retried (the default
    /// buries the job: the server said the call failed).
    pub retry_on_error: bool,
    /// Largest result (serialised JSON) accepted.
    pub max_result_bytes: usize,
    /// Whether a job whose worker died during the call may run again. Set
    /// false for tools with side effects that must not happen twice; a tool
    /// the server marks `idempotentHint: false` is treated so too.
    pub redeliver: bool,
}

impl Default for McpServerConfig {
    fn default() -> Self {
        McpServerConfig {
            command: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            headers: BTreeMap::new(),
            tools: None,
            prefix: None,
            instances: 1,
            max_concurrency: 32,
            call_timeout_ms: 30_000,
            retry_on_error: false,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            redeliver: true,
        }
    }
}

impl McpServerConfig {
    /// The job tool name of the server's tool `tool`.
    pub fn job_name(&self, server: &str, tool: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{tool}"),
            None => format!("{server}.{tool}"),
        }
    }

    /// The prefix every job tool name of this server starts with.
    pub fn job_prefix(&self, server: &str) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("{server}."))
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Whether the server's tool `tool` is exposed.
    pub fn exposes(&self, tool: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|t| t == tool))
    }

    /// What is wrong with this server's settings, if anything.
    pub fn problem(&self) -> Option<String> {
        match (&self.url, self.command.is_empty()) {
            (Some(_), false) => return Some("give `command` or `url`, not both".into()),
            (Some(url), true) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Some("`url` must start with http:// or https://".into())
            }
            (None, true) => {
                return Some("`command` must name a program, e.g. [\"python3\", \"server.py\"] (or give a `url`)".into())
            }
            (None, false) if self.command[0].trim().is_empty() => {
                return Some("`command` must name a program".into())
            }
            _ => {}
        }
        if !(1..=64).contains(&self.instances) {
            return Some("`instances` must be 1 to 64".into());
        }
        if self.max_concurrency == 0 {
            return Some("`max_concurrency` must be at least 1".into());
        }
        if self.call_timeout_ms == 0 {
            return Some("`call_timeout_ms` must be at least 1".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefixes_and_allowlists() {
        let mut c = McpServerConfig {
            command: vec!["python3".into(), "s.py".into()],
            ..Default::default()
        };
        assert_eq!(c.job_name("files", "read"), "files.read");
        assert!(c.exposes("anything") && c.problem().is_none());
        c.prefix = Some("fs_".into());
        c.tools = Some(vec!["read".into()]);
        assert_eq!(c.job_name("files", "read"), "fs_read");
        assert!(c.exposes("read") && !c.exposes("write"));
        c.instances = 0;
        assert!(c.problem().unwrap().contains("instances"));
        let none = McpServerConfig::default();
        assert!(none.problem().unwrap().contains("command"));
    }
}
