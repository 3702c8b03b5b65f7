//! One configured MCP server, supervised: its processes (`instances`) are
//! started and initialised here, each watched by a task of its own that
//! restarts it with capped backoff when it exits, crashes or stops
//! answering. A restart is logged once and counted
//! (`toolq_mcp_server_restarts_total{server}`); calls in flight on a process
//! that died fail retryably, so their jobs run again. The server's stderr
//! goes to the worker's log, tagged with its name. Calls go to the least
//! loaded live process, at most `max_concurrency` at a time on each.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rmcp::handler::client::progress::ProgressDispatcher;
use rmcp::model::{CallToolRequestParams, CallToolResult, Tool as RemoteTool};
use rmcp::service::{Peer, RoleClient, ServiceError};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::config::McpServerConfig;
use super::handler::Handler;
use crate::health::metrics::MCP_RESTARTS;
use crate::tools::{JobContext, ToolError};

/// The worker's environment variables a server inherits; everything else
/// it needs goes in its `env`.
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ",
];
/// How long starting and initialising one process may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// First wait before restarting; doubles up to [`RESTART_MAX`].
const RESTART_BASE: Duration = Duration::from_millis(100);
const RESTART_MAX: Duration = Duration::from_secs(10);
/// A process that lived this long was healthy: its restart starts the
/// backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(1);
/// How long a stopping server gets to exit after its stdin closes (then
/// SIGTERM, then SIGKILL: rmcp's stdio shutdown sequence).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// A running process of the server.
struct Instance {
    peer: Peer<RoleClient>,
    /// Calls in flight, for least-loaded picking.
    load: AtomicUsize,
    permits: Semaphore,
    /// Calls in a row abandoned unanswered (their job timed out): a process
    /// that stops answering but stays alive is restarted after
    /// [`HUNG_AFTER`] of them.
    unanswered: AtomicUsize,
    /// Ends the session, so the supervisor restarts the process.
    kill: tokio_util::sync::CancellationToken,
    /// Where this session's progress notifications arrive, by token.
    progress: ProgressDispatcher,
}

pub struct McpServer {
    pub name: String,
    pub config: McpServerConfig,
    slots: Vec<RwLock<Option<Arc<Instance>>>>,
    /// The server's tools by its own names, from the last listing.
    tools: RwLock<HashMap<String, RemoteTool>>,
    /// Signalled by a process's `tools/list_changed`.
    relist: Arc<Notify>,
    /// Signalled whenever a process comes up.
    up: Notify,
    stop: CancellationToken,
    supervisors: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl McpServer {
    /// Starts every process and lists the tools once the first is up (or
    /// after [`START_TIMEOUT`], with none listed: calls then fail
    /// retryably until the server comes up).
    pub async fn start(name: String, config: McpServerConfig) -> Arc<McpServer> {
        let server = Arc::new(McpServer {
            slots: (0..config.instances).map(|_| RwLock::new(None)).collect(),
            name,
            config,
            tools: RwLock::new(HashMap::new()),
            relist: Arc::new(Notify::new()),
            up: Notify::new(),
            stop: CancellationToken::new(),
            supervisors: std::sync::Mutex::new(Vec::new()),
        });
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(server.slots.len());
        let mut handles: Vec<_> = (0..server.slots.len())
            .map(|i| tokio::spawn(server.clone().supervise(i, ready_tx.clone())))
            .collect();
        handles.push(tokio::spawn(server.clone().relister()));
        if let Ok(mut s) = server.supervisors.lock() {
            *s = handles;
        }
        drop(ready_tx);
        // The first start of each process reports whether it came up; one
        // that did is enough to list the tools.
        let first_up = async {
            let mut reports = 0;
            while let Some(up) = ready_rx.recv().await {
                reports += 1;
                if up {
                    return true;
                }
                if reports == server.slots.len() {
                    return false;
                }
            }
            false
        };
        if tokio::time::timeout(START_TIMEOUT, first_up)
            .await
            .unwrap_or(false)
        {
            if let Err(e) = server.list_tools().await {
                tracing::warn!(server = %server.name, error = %e, "could not list the MCP server's tools");
            }
        } else {
            tracing::warn!(server = %server.name, "MCP server did not come up; its jobs retry until it does");
        }
        server
    }

    /// Asks a live process for every page of tools and keeps those exposed.
    pub async fn list_tools(&self) -> Result<usize, String> {
        let inst = self.pick().ok_or("no process is running")?;
        let all = inst
            .peer
            .list_all_tools()
            .await
            .map_err(|e| e.to_string())?;
        let exposed: HashMap<String, RemoteTool> = all
            .into_iter()
            .filter(|t| self.config.exposes(&t.name))
            .map(|t| (t.name.to_string(), t))
            .collect();
        let n = exposed.len();
        if let Ok(mut tools) = self.tools.write() {
            *tools = exposed;
        }
        Ok(n)
    }

    /// The server's tool `remote` as of the last listing.
    pub fn tool(&self, remote: &str) -> Option<RemoteTool> {
        self.tools.read().ok().and_then(|t| t.get(remote).cloned())
    }

    /// The tools of the last listing.
    pub fn tools(&self) -> Vec<RemoteTool> {
        let mut tools: Vec<RemoteTool> = self
            .tools
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// Whether any process is up (for `/health`).
    pub fn is_up(&self) -> bool {
        self.pick().is_some()
    }

    /// Calls the server's tool `tool`. Transport failures (the process died
    /// or went away mid-call) are retryable; the server refusing the call
    /// (unknown tool, bad params) is not.
    /// While no process is up (one is restarting), the call waits for one,
    /// bounded by the job's timeout like the call itself. The server's
    /// progress notifications for the call are reported to `cx`.
    pub async fn call(
        &self,
        tool: &str,
        args: &Value,
        cx: JobContext<'_>,
    ) -> Result<CallToolResult, ToolError> {
        let inst = self.live().await?;
        let _permit = inst
            .permits
            .acquire()
            .await
            .map_err(|_| ToolError::retryable("MCP server is stopping"))?;
        inst.load.fetch_add(1, Ordering::Relaxed);
        let _load = LoadGuard(&inst.load);
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Value::Object(map) = args {
            params = params.with_arguments(map.clone());
        }
        // Dropped unanswered (the job's timeout, a stop) unless disarmed.
        let mut watch = Unanswered {
            inst: &inst,
            armed: true,
        };
        let answer = super::progress::call(&inst.peer, &inst.progress, params, cx).await;
        watch.armed = false;
        inst.unanswered.store(0, Ordering::Relaxed);
        match answer {
            Ok(result) => Ok(result),
            Err(ServiceError::McpError(e)) => Err(ToolError::Permanent(format!(
                "MCP server `{}` refused the call: {}",
                self.name, e.message
            ))),
            Err(e) => Err(ToolError::retryable(format!(
                "MCP server `{}` failed mid-call: {e}",
                self.name
            ))),
        }
    }

    /// Stops every process (stdin closed, then SIGTERM, then SIGKILL) and
    /// waits for them.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let handles = self
            .supervisors
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for h in handles {
            let _ = tokio::time::timeout(STOP_WAIT * 3, h).await;
        }
    }

    /// Lists the tools again whenever a process says they changed.
    async fn relister(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.relist.notified() => {}
            }
            if let Err(e) = self.list_tools().await {
                tracing::warn!(server = %self.name, error = %e, "could not list the MCP server's tools");
            }
        }
    }

    /// A live process, waiting for one to come up if none is.
    async fn live(&self) -> Result<Arc<Instance>, ToolError> {
        loop {
            let up = self.up.notified();
            if let Some(inst) = self.pick() {
                return Ok(inst);
            }
            if self.stop.is_cancelled() {
                return Err(ToolError::retryable(format!(
                    "MCP server `{}` is stopping",
                    self.name
                )));
            }
            // Re-checked now and then: a notification may race the pick.
            let _ = tokio::time::timeout(Duration::from_millis(100), up).await;
        }
    }

    /// The least loaded live process (one whose connection is already gone
    /// is skipped before its supervisor notices: a call sent there would
    /// only fail).
    fn pick(&self) -> Option<Arc<Instance>> {
        self.slots
            .iter()
            .filter_map(|s| s.read().ok().and_then(|i| i.clone()))
            .filter(|i| !i.peer.is_transport_closed())
            .min_by_key(|i| i.load.load(Ordering::Relaxed))
    }

    /// Keeps process `i` running until the server stops.
    async fn supervise(self: Arc<Self>, i: usize, ready: tokio::sync::mpsc::Sender<bool>) {
        let mut failures: u32 = 0;
        let mut started_before = false;
        while !self.stop.is_cancelled() {
            if started_before {
                metrics::counter!(MCP_RESTARTS, "server" => self.name.clone()).increment(1);
            }
            started_before = true;
            let running = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = tokio::time::timeout(START_TIMEOUT, self.spawn()) => r,
            };
            let mut service = match running {
                Ok(Ok(service)) => service,
                Ok(Err(e)) => {
                    let _ = ready.try_send(false);
                    tracing::warn!(server = %self.name, instance = i, error = %e, "MCP server failed to start");
                    self.pause(&mut failures).await;
                    continue;
                }
                Err(_) => {
                    let _ = ready.try_send(false);
                    tracing::warn!(server = %self.name, instance = i, "MCP server did not initialise in time");
                    self.pause(&mut failures).await;
                    continue;
                }
            };
            let kill = tokio_util::sync::CancellationToken::new();
            let inst = Arc::new(Instance {
                peer: service.peer().clone(),
                load: AtomicUsize::new(0),
                permits: Semaphore::new(self.config.max_concurrency),
                unanswered: AtomicUsize::new(0),
                kill: kill.clone(),
                progress: service.service().progress.clone(),
            });
            if let Ok(mut slot) = self.slots[i].write() {
                *slot = Some(inst);
            }
            self.up.notify_waiters();
            let _ = ready.try_send(true);
            let up = tokio::time::Instant::now();
            tokio::select! {
                _ = self.stop.cancelled() => {
                    self.clear(i);
                    let _ = service.close_with_timeout(STOP_WAIT * 2).await;
                    return;
                }
                _ = wait_closed(service.peer()) => {}
                _ = kill.cancelled() => {
                    tracing::warn!(server = %self.name, instance = i,
                        "MCP server stopped answering; restarting it");
                }
            }
            self.clear(i);
            let _ = service.close_with_timeout(STOP_WAIT).await;
            tracing::warn!(server = %self.name, instance = i,
                "MCP server process exited; its calls in flight fail and are retried; restarting");
            // A process that ran for a while is restarted at once; only one
            // that keeps dying right after it started backs off further.
            if up.elapsed() > HEALTHY_RUN {
                failures = 0;
            }
            self.pause(&mut failures).await;
        }
    }

    fn clear(&self, i: usize) {
        if let Ok(mut slot) = self.slots[i].write() {
            *slot = None;
        }
    }

    async fn pause(&self, failures: &mut u32) {
        let wait = RESTART_BASE
            .saturating_mul(2u32.saturating_pow((*failures).min(16)))
            .min(RESTART_MAX);
        *failures += 1;
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Starts one process (or opens one session with a `url` server) and
    /// runs the initialize handshake.
    async fn spawn(&self) -> Result<rmcp::service::RunningService<RoleClient, Handler>, String> {
        if let Some(url) = &self.config.url {
            return self.connect(url).await;
        }
        let mut cmd = tokio::process::Command::new(&self.config.command[0]);
        // A third-party server gets no secret of the worker's (its Redis
        // URL, API keys): only the basics a program needs, and its own env.
        cmd.args(&self.config.command[1..]).env_clear();
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.envs(&self.config.env);
        if let Some(dir) = &self.config.cwd {
            cmd.current_dir(dir);
        }
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", self.config.command[0]))?;
        if let Some(stderr) = stderr {
            let name = self.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(server = %name, "mcp stderr: {line}");
                }
            });
        }
        Handler::new(self.name.clone(), self.relist.clone())
            .serve(transport)
            .await
            .map_err(|e| format!("initialize failed: {e}"))
    }
}

impl McpServer {
    /// A session with a streamable-HTTP server.
    async fn connect(
        &self,
        url: &str,
    ) -> Result<rmcp::service::RunningService<RoleClient, Handler>, String> {
        use reqwest::header::{HeaderName, HeaderValue};
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::transport::StreamableHttpClientTransport;
        // rmcp's HTTP client takes the process's default TLS provider; ring
        // is the one this build has (an error means one is installed).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
        for (name, spec) in &self.config.headers {
            let value = crate::tools::http::header_value(spec)
                .map_err(|e| format!("header {name}: {e}"))?;
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("not a header name: {name:?}"))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| format!("header {name}: not a valid value"))?;
            value.set_sensitive(true);
            config.custom_headers.insert(key, value);
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        Handler::new(self.name.clone(), self.relist.clone())
            .serve(transport)
            .await
            .map_err(|e| format!("initialize failed: {e}"))
    }
}

/// Calls in a row a process leaves unanswered before it counts as hung.
const HUNG_AFTER: usize = 3;

/// Counts a call abandoned before its answer; enough in a row end the
/// process's session, and the supervisor starts it afresh.
struct Unanswered<'a> {
    inst: &'a Instance,
    armed: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.armed && self.inst.unanswered.fetch_add(1, Ordering::Relaxed) + 1 >= HUNG_AFTER {
            self.inst.kill.cancel();
        }
    }
}

struct LoadGuard<'a>(&'a AtomicUsize);

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Resolves once the connection to the process is gone (it exited, or
/// wrote something that ended the session).
async fn wait_closed(peer: &Peer<RoleClient>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if peer.is_transport_closed() {
            return;
        }
    }
}
