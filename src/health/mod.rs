//! The side port: liveness, readiness, JSON health and Prometheus metrics.

pub mod metrics;
mod state;

pub use state::{HealthState, HEARTBEAT_STALE_AFTER};
