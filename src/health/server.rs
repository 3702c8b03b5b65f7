//! The side-port HTTP server: probes for the orchestrator, JSON for humans,
//! text for Prometheus.
//!
//! Handlers only read [`HealthState`] atomics and render the recorder, so they
//! never touch Redis: a probe cannot add load to an outage it is reporting.
//!
//! The port is open to whoever can reach it, without authentication, so its
//! accept loop is our own rather than `axum::serve`: each connection must
//! send a complete request header within [`SideLimits::header_timeout`] (the
//! same clock runs while a kept-alive connection waits for its next
//! request), lives at most [`CONNECTION_MAX_AGE`], and at most
//! [`SideLimits::max_connections`] are open at once. A hostile-input trial
//! held 120 idle connections against a worker with 64 file descriptors: its
//! weather calls failed with EMFILE and `/healthz` stopped answering. Now a
//! connection over the cap closes the one that has been idle longest (no
//! request in progress: still owing its header, or kept alive after an
//! answer) once that one has been idle [`EVICT_AFTER`], so probes get
//! through while idle connections are held. While every open connection is
//! answering a request or too fresh to judge, the newcomer waits and no
//! other connection is accepted: the rest wait in the kernel's backlog, not
//! in our file descriptors; one that waits longer than the header timeout
//! is closed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{HealthError, HealthState};

/// How long in-flight requests may finish after shutdown is signalled. A
/// half-sent request from a stuck client must not hold up the worker's exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Longest a connection stays open, however busy: a client that sends a
/// request and then never reads the answer would otherwise keep its slot
/// for ever. Scrapers simply reconnect.
pub const CONNECTION_MAX_AGE: Duration = Duration::from_secs(60);

/// Pause after a failed `accept` (e.g. EMFILE), so the loop does not spin
/// while the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a connection must have been idle before a newcomer may close
/// it: a client's request follows its handshake within a round trip, so a
/// connection idle this long is not about to send one, while a burst of
/// fresh connections is not torn down before its requests arrive.
pub const EVICT_AFTER: Duration = Duration::from_millis(100);

/// How often a connection waiting for a slot looks again.
const ADMIT_POLL: Duration = Duration::from_millis(10);

/// Prometheus text exposition format; scrapers pick the parser by it.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the side port allows each client, so that it can never cost the
/// worker more than a fixed share of its file descriptors and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideLimits {
    /// Most connections open at once (`http_max_connections`).
    pub max_connections: usize,
    /// Longest a connection may take to send a complete request header,
    /// from when it is accepted or from its last response
    /// (`http_header_timeout_ms`).
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
    let cap = limits.max_connections.min(fd_share()).max(1);
    let slots = Arc::new(Slots::new(cap));
    let stop = CancellationToken::new();
    // Dropping the set aborts what is left after the grace period.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors (EMFILE): give one back by
                    // closing the connection idle longest, if any.
                    tracing::debug!(error = %e, "health.serve: accept failed");
                    slots.evict_idle();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Nothing else is accepted while this one waits for a slot.
        let waited = std::time::Instant::now();
        let mut stopping = false;
        let slot = loop {
            if let Some(slot) = slots.admit() {
                break Some(slot);
            }
            if waited.elapsed() >= limits.header_timeout {
                break None;
            }
            tokio::select! {
                () = &mut shutdown => {
                    stopping = true;
                    break None;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(ADMIT_POLL) => {}
            }
        };
        let Some(slot) = slot else {
            drop(stream);
            if stopping {
                break;
            }
            continue;
        };
        let (app, stop, slots) = (app.clone(), stop.clone(), slots.clone());
        tasks.spawn(async move {
            connection(stream, app, &slot, limits.header_timeout, stop).await;
            slots.release(slot.id);
        });
    }
    drop(listener);
    stop.cancel();
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::debug!("health.serve: grace period over, dropping open connections");
    }
    Ok(())
}

/// A quarter of the process's file-descriptor limit (soft `RLIMIT_NOFILE`):
/// the side port's share whatever `max_connections` says, so that a worker
/// started with few descriptors keeps most of them for Redis and its tools
/// (16 connections under `ulimit -n 64`).
fn fd_share() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) only writes the struct we pass it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur / 4).unwrap_or(usize::MAX)
}

/// Serves one connection until it closes, times out, is evicted for a
/// newer one, or shutdown asks it to finish its request and close.
async fn connection(
    stream: TcpStream,
    app: Router,
    slot: &Slot,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let state = slot.state.clone();
    let service = hyper::service::service_fn(move |req| {
        let mut app = app.clone();
        let busy = Busy::enter(state.clone());
        async move {
            let response = tower_service::Service::call(&mut app, req).await;
            drop(busy);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A client may shut its write side once its request is sent (as
        // `curl` and probes can); it still gets its answer.
        .half_close(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = slot.evict.cancelled() => {}
        () = tokio::time::sleep(CONNECTION_MAX_AGE) => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Whether a connection is answering a request, and since when it is idle
/// (milliseconds since [`Slots::epoch`]): what [`Slots::admit`] judges it by.
struct SlotState {
    epoch: std::time::Instant,
    busy: AtomicBool,
    idle_since_ms: AtomicU64,
}

impl SlotState {
    fn new(epoch: std::time::Instant) -> Self {
        let s = SlotState {
            epoch,
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
        };
        s.touch();
        s
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(ms, Ordering::Relaxed);
    }

    /// How long it has been idle; `None` while it answers a request.
    fn idle_for(&self, now_ms: u64) -> Option<u64> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        Some(now_ms.saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)))
    }
}

/// Marks a connection as answering a request for as long as it lives, so it
/// is not evicted mid-answer; its idle time starts again when it is dropped.
struct Busy(Arc<SlotState>);

impl Busy {
    fn enter(state: Arc<SlotState>) -> Self {
        state.busy.store(true, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// One open connection's place in [`Slots`].
struct Slot {
    id: u64,
    state: Arc<SlotState>,
    /// Cancelled to close the connection for a newer one.
    evict: CancellationToken,
}

/// What [`Slots`] keeps of each open connection, by id (ids grow with each
/// accept): its state and how to close it.
type OpenSlots = BTreeMap<u64, (Arc<SlotState>, CancellationToken)>;

/// The open connections, and the id the next one gets.
struct Slots {
    cap: usize,
    epoch: std::time::Instant,
    open: Mutex<(u64, OpenSlots)>,
}

impl Slots {
    fn new(cap: usize) -> Self {
        Slots {
            cap,
            epoch: std::time::Instant::now(),
            open: Mutex::new((0, BTreeMap::new())),
        }
    }

    /// A slot for a new connection: a free one, or that of the connection
    /// idle longest (at least [`EVICT_AFTER`]), which is closed; `None`
    /// while every connection answers a request or is too fresh to judge.
    fn admit(&self) -> Option<Slot> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (next, open) = &mut *guard;
        if open.len() >= self.cap && !self.evict_locked(open) {
            return None;
        }
        *next += 1;
        let slot = Slot {
            id: *next,
            state: Arc::new(SlotState::new(self.epoch)),
            evict: CancellationToken::new(),
        };
        open.insert(slot.id, (slot.state.clone(), slot.evict.clone()));
        Some(slot)
    }

    /// Closes the connection idle longest (at least [`EVICT_AFTER`]);
    /// false when there is none.
    fn evict_idle(&self) -> bool {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.evict_locked(&mut guard.1)
    }

    fn evict_locked(&self, open: &mut OpenSlots) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let floor = u64::try_from(EVICT_AFTER.as_millis()).unwrap_or(u64::MAX);
        let victim = open
            .iter()
            .filter_map(|(&id, (state, _))| Some((id, state.idle_for(now)?)))
            .filter(|&(_, idle)| idle >= floor)
            .max_by_key(|&(_, idle)| idle)
            .map(|(id, _)| id);
        match victim.and_then(|id| open.remove(&id)) {
            Some((_, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }

    fn release(&self, id: u64) {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.remove(&id);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_closes_the_connection_idle_longest_never_a_busy_or_fresh_one() {
        let slots = Slots::new(2);
        let (a, b) = (slots.admit().unwrap(), slots.admit().unwrap());
        // Both fresh: the newcomer must wait.
        assert!(slots.admit().is_none());
        std::thread::sleep(EVICT_AFTER + Duration::from_millis(20));
        let busy = Busy::enter(a.state.clone());
        let c = slots.admit().expect("b has been idle long enough");
        assert!(b.evict.is_cancelled() && !a.evict.is_cancelled());
        // a answers a request, c is fresh: nobody to close.
        assert!(slots.admit().is_none());
        drop(busy);
        slots.release(c.id);
        assert!(slots.admit().is_some(), "a released slot is free");
    }
}
