//! The operator console at `/ui`: server-rendered pages (askama templates
//! in `templates/`), one stylesheet (`static/`), no script and nothing from
//! a CDN, so it works offline and under `default-src 'self'`.
//!
//! - `session`: who is looking: the gateway's JWT kept in an HttpOnly,
//!   SameSite=Strict cookie and checked again on every request (with
//!   `--no-auth`, an anonymous session that may do everything).
//! - `csrf`: the per-session token every form carries, and [`csrf::Act`],
//!   the extractor of every action (token checked, `admin` required).
//! - `login`: the login and logout forms.
//! - `page`: the layout, error pages and the headers of every answer.
//! - `queues`, `workers`, `jobs`, `job`: the pages; `throughput`: rates
//!   from the stats totals; `actions`: pause, resume, cancel, retry, purge.
//! - `view`: formatting shared by the pages (ages, times, JSON).
//!
//! Looking needs a token with `results: true`, acting one with `admin:
//! true`; both only on the queues the token's `queues` allow.

mod actions;
mod csrf;
mod job;
mod jobs;
mod login;
mod page;
mod queues;
mod session;
mod throughput;
mod view;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{middleware, Router};

use super::Auth;
use crate::config::Config;
use crate::producer::Producer;

/// What every page and action needs.
pub struct Console {
    producer: Producer,
    auth: Arc<Auth>,
    /// Workers quiet for longer are not shown as live (`heartbeat_timeout_ms`).
    heartbeat_timeout: Duration,
    /// How long a retried unique job holds its key (`unique_ttl_s`).
    unique_ttl: Duration,
    throughput: throughput::Throughput,
}

impl Console {
    pub fn new(config: &Config, producer: Producer, auth: Arc<Auth>) -> Arc<Self> {
        Arc::new(Console {
            producer,
            auth,
            heartbeat_timeout: config.heartbeat_timeout(),
            unique_ttl: Duration::from_secs(config.unique_ttl_s),
            throughput: throughput::Throughput::default(),
        })
    }
}

/// The console's routes, to be nested at `/ui` outside the bearer-token
/// layer: the session middleware authenticates them instead.
pub fn router<S: Clone + Send + Sync + 'static>(console: Arc<Console>) -> Router<S> {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/queues") }))
        .route("/queues", get(queues::page))
        .route("/workers", get(workers::page))
        .route("/queues/{queue}/jobs", get(jobs::page))
        .route("/queues/{queue}/jobs/{id}", get(job::page))
        .route("/queues/{queue}/pause", post(actions::pause))
        .route("/queues/{queue}/resume", post(actions::resume))
        .route("/queues/{queue}/jobs/{id}/cancel", post(actions::cancel))
        .route("/queues/{queue}/dead/retry", post(actions::retry))
        .route("/queues/{queue}/dead/purge", post(actions::purge))
        .route("/logout", post(login::logout))
        .route_layer(middleware::from_fn_with_state(
            console.clone(),
            session::require,
        ));
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/static/console.css", get(page::stylesheet))
        .merge(pages)
        .fallback(page::not_found)
        .layer(middleware::from_fn(page::headers))
        .with_state(console)
}
