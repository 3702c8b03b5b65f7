//! Request metrics: `toolq_http_requests_total{route,status}` and
//! `toolq_http_request_duration_seconds{route}`. The route is the matched
//! pattern (`/jobs/{id}`), never the raw path, so ids cannot blow up the
//! label set.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::health::metrics::{HTTP_REQUESTS, HTTP_REQUEST_DURATION};

pub async fn record(request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_owned(),
        None if request.uri().path().starts_with("/mcp") => "/mcp".to_owned(),
        None => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
