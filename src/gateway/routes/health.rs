//! `GET /health`: whether the gateway can reach Redis (no token needed, so
//! load balancers can probe it; it reveals no job data).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::gateway::api::Health;
use crate::gateway::core::Gateway;

const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, description = "Redis answers", body = Health),
        (status = 503, description = "Redis does not answer", body = Health),
    )
)]
pub async fn health(State(gw): State<Arc<Gateway>>) -> (StatusCode, Json<Health>) {
    let broker = gw.producer.broker();
    let up = matches!(
        tokio::time::timeout(PING_TIMEOUT, broker.ping()).await,
        Ok(Ok(_))
    );
    let workers = match up {
        true => gw.catalog().await.map(|c| worker_count(&c)).unwrap_or(0),
        false => 0,
    };
    let body = Health {
        status: if up { "ok" } else { "down" }.into(),
        redis: if up { "up" } else { "down" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        workers,
    };
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

fn worker_count(catalog: &crate::producer::Catalog) -> usize {
    let mut workers: Vec<&String> = catalog.tools().flat_map(|t| t.workers.iter()).collect();
    workers.sort();
    workers.dedup();
    workers.len()
}
