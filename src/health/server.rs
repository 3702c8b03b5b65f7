//! The side-port HTTP server: probes for the orchestrator, JSON for humans,
//! text for Prometheus.
//!
//! Handlers only read [`HealthState`] atomics and render the recorder, so they
//! never touch Redis: a probe cannot add load to an outage it is reporting.
//!
//! The port is open to whoever can reach it, without authentication, so it
//! is served by [`crate::listener`] under [`SideLimits`]: a connection cap
//! that closes the connection idle longest for a newcomer, a header timeout
//! (also how long a kept-alive connection may wait idle), and
//! [`CONNECTION_MAX_AGE`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;

use super::{HealthError, HealthState};

/// How long in-flight requests may finish after shutdown is signalled. A
/// half-sent request from a stuck client must not hold up the worker's exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Longest a connection stays open, however busy: a client that sends a
/// request and then never reads the answer would otherwise keep its slot
/// for ever. Scrapers simply reconnect.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);

pub use crate::listener::EVICT_AFTER;

/// Prometheus text exposition format; scrapers pick the parser by it.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the side port allows each client, so that it can never cost the
/// worker more than a fixed share of its file descriptors and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideLimits {
    /// Most connections open at once (`http_max_connections`).
    pub max_connections: usize,
    /// Longest a request header may take from its first byte, and longest
    /// a connection may wait for a request, from when it is accepted or
    /// from its last response (`http_header_timeout_ms`).
    pub header_timeout: Duration,
}

impl Default for SideLimits {
    fn default() -> Self {
        SideLimits {
            max_connections: crate::config::DEFAULT_HTTP_MAX_CONNECTIONS,
            header_timeout: Duration::from_millis(crate::config::DEFAULT_HTTP_HEADER_TIMEOUT_MS),
        }
    }
}

#[derive(Clone)]
struct App {
    state: Arc<HealthState>,
    metrics: PrometheusHandle,
}

/// Binds here rather than in the caller so the error names the address the
/// operator has to change.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, HealthError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError::Bind { addr, source })
}

/// [`serve_with`] under the default [`SideLimits`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<HealthState>,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HealthError> {
    serve_with(listener, state, metrics, SideLimits::default(), shutdown).await
}

/// Serves until `shutdown` resolves, then gives open requests
/// [`SHUTDOWN_GRACE`] to finish. Takes a bound listener so tests can use port
/// 0 and the binary can report bind errors before starting any work.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<HealthState>,
    metrics: PrometheusHandle,
    limits: SideLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HealthError> {
    let app = router(state, metrics);
    let limits = crate::listener::Limits {
        max_connections: limits.max_connections,
        // A quarter: the worker keeps most of its descriptors for Redis and
        // its tools.
        fd_share_divisor: 4,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.header_timeout,
        max_age: Some(CONNECTION_MAX_AGE),
        grace: SHUTDOWN_GRACE,
    };
    if !crate::listener::serve(listener, app, limits, shutdown).await {
        tracing::debug!("health.serve: grace period over, dropping open connections");
    }
    Ok(())
}

fn router(state: Arc<HealthState>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(App { state, metrics })
}

/// Liveness: answering at all proves the runtime is not wedged. Redis being
/// down must not get the pod restarted, so nothing else is checked.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: says why not, so `kubectl describe` shows the failing check.
async fn readyz(State(app): State<App>) -> Response {
    match app.state.not_ready_reason() {
        None => Json(json!({ "status": "ready" })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "failing": reason })),
        )
            .into_response(),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    version: &'a str,
    worker_id: &'a str,
    uptime_s: u64,
    redis: RedisHealth,
    in_flight: usize,
    concurrency: usize,
    shutting_down: bool,
    /// `null` before the first heartbeat, so "never" is not mistaken for 0.
    heartbeat_age_ms: Option<u64>,
    queues: Vec<QueueDepth>,
    /// Per MCP server: `up` or `restarting`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    mcp_servers: std::collections::BTreeMap<String, &'static str>,
}

/// `{"ok": true, "ping_ms": 0.8}` while Redis answers; while it does not,
/// `{"ok": false, "ping_ms": null, "down_for_ms": …, "error": "…"}`: no
/// round trip from before the outage passed off as current.
#[derive(Serialize)]
struct RedisHealth {
    ok: bool,
    ping_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    down_for_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct QueueDepth {
    name: String,
    pending: u64,
    active: u64,
    delayed: u64,
    dead: u64,
}

/// Everything an operator checks first, in one `curl`. 200 `ok`, or 200
/// `degraded` while not ready for another reason (shutting down, a stale
/// heartbeat, settling refused); 503 `down` while Redis does not answer, as
/// the gateway's `/health` says it. The body is the same JSON either way
/// (queue depths as last read).
async fn health(State(app): State<App>) -> Response {
    let s = &app.state;
    let queues = s
        .depths()
        .into_iter()
        .map(|(name, [pending, active, delayed, dead])| QueueDepth {
            name,
            pending,
            active,
            delayed,
            dead,
        })
        .collect();
    let redis_ok = s.redis_ok();
    let body = Health {
        status: match s.not_ready_reason() {
            None => "ok",
            Some(_) if !redis_ok => "down",
            Some(_) => "degraded",
        },
        version: s.version,
        worker_id: &s.worker_id,
        uptime_s: s.uptime().as_secs(),
        redis: RedisHealth {
            ok: redis_ok,
            ping_ms: redis_ok.then(|| s.redis_ping().as_secs_f64() * 1000.0),
            down_for_ms: s
                .redis_down_for()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            error: s.redis_error(),
        },
        in_flight: s.in_flight(),
        concurrency: s.concurrency,
        shutting_down: s.shutting_down(),
        heartbeat_age_ms: s
            .heartbeat_age()
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        queues,
        mcp_servers: s
            .mcp_servers()
            .into_iter()
            .map(|(name, up)| (name, if up { "up" } else { "restarting" }))
            .collect(),
    };
    let code = if redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn prometheus(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        app.metrics.render(),
    )
        .into_response()
}

/// JSON even for errors, so clients that parse every body do not choke.
async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))).into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": "method not allowed" })),
    )
        .into_response()
}
