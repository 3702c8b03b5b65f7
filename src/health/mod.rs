//! The side port: liveness, readiness, JSON health and Prometheus metrics.
//!
//! The worker owns a [`HealthState`] and updates it; [`serve`] only reads it,
//! so a slow or hostile scraper can never stall a job. Metrics go through the
//! `metrics` facade; [`install_recorder`] wires that facade to Prometheus once
//! per process and [`serve`] renders it on `/metrics`.

pub mod metrics;
mod recorder;
mod server;
mod state;

use std::net::SocketAddr;

pub use crate::spec::{HttpAddr, DEFAULT_HTTP_ADDR};
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use recorder::{
    describe_metrics, install_recorder, mark_worker_down, mark_worker_up, set_concurrency_limit,
};
pub use server::{
    bind, serve, serve_with, SideLimits, CONNECTION_MAX_AGE, EVICT_AFTER, SHUTDOWN_GRACE,
};
pub use state::{HealthState, HEARTBEAT_STALE_AFTER};

/// Errors of the side port and the metrics recorder.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Usually the port is taken or privileged; the address tells the
    /// operator which `--http-addr` to change.
    #[error("health.bind: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Another recorder was installed first (a library user's own), or the
    /// bucket configuration was rejected.
    #[error("health.recorder: cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    #[error(transparent)]
    InvalidAddr(#[from] crate::spec::InvalidAddr),
    /// The accept loop failed; the listener is gone.
    #[error("health.serve: {0}")]
    Serve(#[source] std::io::Error),
}

/// Result alias for the health module.
pub type Result<T, E = HealthError> = std::result::Result<T, E>;
