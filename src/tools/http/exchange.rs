//! One HTTP exchange as every HTTP-backed tool sees it (the built-in
//! weather tool and `[tools.http.<name>]` tools alike): the body read with a
//! size cap, and each failure mapped to a [`ToolError`] that says whether a
//! retry can help. 429 and 5xx are retryable, honouring `Retry-After`;
//! other 4xx are permanent; a timeout or a refused connection is
//! retryable.

use std::error::Error as StdError;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use crate::tools::ToolError;

/// The client of one HTTP-backed tool: rustls, a per-request timeout, and
/// no redirects (one would replay the request's secrets, a key in the query
/// string or a token in a header, to whatever host it names).
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("toolq/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Reads the body, failing permanently past `max` bytes (without
/// buffering more than that).
pub async fn read_body(
    mut response: Response,
    max: usize,
    service: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ToolError> {
    let too_large = || {
        ToolError::Permanent(format!(
            "unexpected response from {service}: body larger than {max} bytes"
        ))
    };
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| transport_error(err, service, timeout))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request that got no answer: retryable unless it could not be built.
/// The URL is stripped (it may carry a key in its query string).
pub fn transport_error(err: reqwest::Error, service: &str, timeout: Duration) -> ToolError {
    let err = err.without_url();
    if err.is_timeout() {
        ToolError::retryable(format!("{service} did not answer within {timeout:?}"))
    } else if err.is_connect() {
        ToolError::retryable(format!(
            "could not connect to {service}: {}",
            describe(&err)
        ))
    } else if err.is_builder() {
        ToolError::Permanent(format!(
            "could not build the {service} request: {}",
            describe(&err)
        ))
    } else {
        ToolError::retryable(format!("{service} request failed: {}", describe(&err)))
    }
}

/// Only the delay-seconds form: an HTTP date would need a clock we cannot
/// trust to match the server's.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An answer that is not a success: 429 and 5xx retryable (after
/// `retry_after` when the server said), every other status permanent.
/// `detail` is what the body said, if anything.
pub fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: Option<String>,
    service: &str,
) -> ToolError {
    let detail = detail.map(|m| format!(": {m}")).unwrap_or_default();
    match status {
        StatusCode::TOO_MANY_REQUESTS => ToolError::Retryable {
            message: format!("{service} rate limit exceeded (429){detail}"),
            retry_after,
        },
        s if s.is_server_error() => ToolError::Retryable {
            message: format!("{service} server error ({s}){detail}"),
            retry_after,
        },
        s if s.is_client_error() => ToolError::Permanent(format!("{service} returned {s}{detail}")),
        s => ToolError::Permanent(format!(
            "unexpected response from {service}: status {s}{detail}"
        )),
    }
}

/// reqwest's top-level messages ("error sending request") say little; the
/// cause ("Connection refused") is in the source chain.
pub fn describe(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retryable_or_permanent() {
        let wait = Some(Duration::from_secs(7));
        match status_error(StatusCode::TOO_MANY_REQUESTS, wait, None, "svc") {
            ToolError::Retryable { retry_after, .. } => assert_eq!(retry_after, wait),
            e => panic!("{e:?}"),
        }
        assert!(status_error(StatusCode::BAD_GATEWAY, None, None, "svc").is_retryable());
        let e = status_error(StatusCode::BAD_REQUEST, None, Some("no".into()), "svc");
        assert_eq!(e.to_string(), "svc returned 400 Bad Request: no");
        assert!(!e.is_retryable());
    }
}
