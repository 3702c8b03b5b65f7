//! The gateway (`toolq serve`): an HTTP API and an MCP endpoint in front of
//! the queue. Every call becomes a durable job run by the worker fleet; the
//! gateway itself holds no job state, so any number of them can run.
//!
//! - `auth`: bearer JWTs and the `toolq` grant claim.
//! - `core`: what every call does (rights, catalog check, enqueue, wait).
//! - `completions`: one waiting connection per queue for all requests.
//! - `routes`: the REST API; `openapi`: its generated document.
//! - `mcp`: the MCP endpoint at `/mcp`.
//! - `metrics`: request counters and durations.
//! - `ui`: the operator console at `/ui` (its own cookie sessions).

pub mod api;
pub mod auth;
mod completions;
mod core;
mod mcp;
mod metrics;
pub mod openapi;
mod routes;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServeConfig};
use crate::health::PrometheusHandle;
use crate::producer::Producer;
use crate::tools::RateLimit;

pub use auth::{Auth, Grant, KeyError, Verifier};
use completions::Completions;
use core::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("serve.addr: {0:?} is not host:port")]
    Addr(String),
    #[error("serve: --no-auth is refused on {0}: only a loopback address may run without authentication")]
    OpenNotLoopback(SocketAddr),
    #[error("serve.rate_limit: {0}")]
    RateLimit(String),
    #[error("serve: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serve: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
}

/// A checked `[serve]`: the address, how requests are authenticated, the
/// rate limit. Checked before anything listens, so a bad key file or an
/// unauthenticated public address never serves a single request.
pub struct Plan {
    pub addr: SocketAddr,
    pub auth: Auth,
    pub rate_limit: Option<RateLimit>,
}

impl Plan {
    pub fn from_config(serve: &ServeConfig) -> Result<Plan, GatewayError> {
        let addr = resolve(&serve.addr)?;
        let auth = if serve.no_auth {
            if !addr.ip().is_loopback() {
                return Err(GatewayError::OpenNotLoopback(addr));
            }
            Auth::Open
        } else {
            Auth::Jwt(Verifier::from_config(serve)?)
        };
        let rate_limit = match &serve.rate_limit {
            None => None,
            Some(text) => Some(
                text.parse::<RateLimit>()
                    .map_err(|e| GatewayError::RateLimit(e.to_string()))?,
            ),
        };
        Ok(Plan {
            addr,
            auth,
            rate_limit,
        })
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, GatewayError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| GatewayError::Addr(addr.to_owned()))
}

/// Binds, then serves until `shutdown`; in-flight requests then get the
/// configured grace to finish. `ready` is told the bound address.
pub async fn run(
    config: &Config,
    plan: Plan,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), GatewayError> {
    let listener = TcpListener::bind(plan.addr)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: plan.addr.to_string(),
            source,
        })?;
    let bound = listener.local_addr().map_err(GatewayError::Serve)?;
    let metrics = crate::health::install_recorder()?;
    crate::health::describe_metrics();
    let producer = Producer::from_config(config)?;
    let stop = CancellationToken::new();
    let completions = Completions::new(producer.broker().clone(), stop.clone());
    let gateway = Arc::new(Gateway::new(
        producer,
        completions,
        config.serve.clone(),
        config.heartbeat_timeout_ms,
        plan.rate_limit,
    ));
    let open = matches!(plan.auth, Auth::Open);
    // Ends MCP sessions (their idle event streams would hold the shutdown
    // for the whole grace) once no MCP call is in flight.
    let sessions = CancellationToken::new();
    let auth = Arc::new(plan.auth);
    let console = ui::Console::new(config, gateway.producer.clone(), auth.clone());
    let app = router(
        gateway.clone(),
        auth,
        console,
        metrics,
        open,
        sessions.clone(),
    );
    ready(bound);
    tracing::info!(addr = %bound, auth = if open { "none (loopback)" } else { "jwt" }, "gateway listening");

    let signal = async move {
        shutdown.await;
        tracing::info!("gateway: shutting down; finishing in-flight requests");
        tokio::spawn(async move {
            while gateway.mcp_calls_in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sessions.cancel();
        });
    };
    let limits = crate::listener::Limits {
        max_connections: config.serve.max_connections,
        // Half: the rest is for Redis (a pool, one waiting connection per
        // queue) and the key files.
        fd_share_divisor: 2,
        header_timeout: Duration::from_millis(config.serve.header_timeout_ms),
        idle_timeout: Duration::from_millis(config.serve.idle_timeout_ms),
        // A wait or an MCP event stream lasts as long as it must.
        max_age: None,
        grace: config.shutdown_grace(),
    };
    if !crate::listener::serve(listener, app, limits, signal).await {
        tracing::warn!("gateway: grace period over; dropping open requests");
    }
    // Only now: requests still waiting must hear their jobs finish.
    stop.cancel();
    // Let listeners delete their notification lists.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

fn router(
    gateway: Arc<Gateway>,
    auth: Arc<Auth>,
    console: Arc<ui::Console>,
    prometheus: PrometheusHandle,
    open: bool,
    sessions: CancellationToken,
) -> Router {
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(sessions)
        .with_max_request_body_bytes(gateway.serve.max_body_bytes);
    if !open {
        // Host checks guard unauthenticated local servers against DNS
        // rebinding; with tokens required they would only break proxies.
        mcp_config = mcp_config.disable_allowed_hosts();
    }
    let endpoint = mcp::McpEndpoint::new(gateway.clone());
    let mcp_service = StreamableHttpService::new(
        move || Ok(endpoint.clone()),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let authenticated = Router::new()
        .route("/tools", get(routes::tools::list))
        .route("/execute", post(routes::execute::execute))
        .route("/batch", post(routes::batch::batch))
        .route("/jobs/{id}", get(routes::jobs::show))
        .route("/jobs/{id}/cancel", post(routes::queues::cancel))
        .route("/queues", get(routes::queues::list))
        .route(
            "/queues/{queue}",
            axum::routing::delete(routes::queues::delete),
        )
        .route("/queues/{queue}/pause", post(routes::queues::pause))
        .route("/queues/{queue}/resume", post(routes::queues::resume))
        .nest_service("/mcp", mcp_service)
        .layer(middleware::from_fn_with_state(auth, auth::authenticate));
    let body_limit = gateway.serve.max_body_bytes;
    Router::new()
        .route("/health", get(routes::health::health))
        .route("/openapi.json", get(openapi_json))
        .route(
            "/metrics",
            get(move || {
                let text = prometheus.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
        .merge(authenticated)
        .nest("/ui", ui::router(console))
        .fallback(|| async {
            api::ApiError::NotFound("no such route; see /openapi.json".into()).into_response()
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(metrics::record))
        .with_state(gateway)
}

async fn openapi_json() -> impl IntoResponse {
    Json(openapi::document())
}
