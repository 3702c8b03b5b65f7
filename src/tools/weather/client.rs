//! The HTTP side: one pooled client for the whole process, the request, and
//! the mapping of every failure to a [`ToolError`] that says whether a retry
//! can help.
//!
//! The API key travels in the query string, and reqwest puts the full URL in
//! its errors, so every error leaves through [`redact`]: URLs are stripped
//! where they arise and any remaining copy of the key is masked.

use std::error::Error as StdError;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{redirect, Response, StatusCode, Url};
use serde_json::Value;

use super::args::{Location, Request};
use super::response::summarize;
use super::ConfigError;
use crate::tools::secret::{Secret, REDACTED};
use crate::tools::ToolError;

const ENDPOINT_PATH: &str = "/data/2.5/weather";
/// A current-weather body is about 1 KiB; anything far larger is not the API
/// we expect and must not be buffered whole.
const MAX_BODY_BYTES: usize = 1 << 20;
/// API messages are echoed into results and the dead set; keep them short.
const MAX_MESSAGE_CHARS: usize = 200;

#[derive(Debug)]
pub struct WeatherClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Secret,
    timeout: Duration,
}

impl WeatherClient {
    pub fn new(base_url: &str, api_key: Secret, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let endpoint = endpoint(base_url)?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            // A redirect would replay the key, in the query string, to
            // whatever host it names; OpenWeather never redirects.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("toolq/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| ConfigError::Client(describe(&err.without_url())))?;
        Ok(WeatherClient {
            http,
            endpoint,
            api_key,
            timeout,
        })
    }

    /// Current conditions for one location, as the tool's output JSON.
    pub async fn current(&self, request: &Request) -> Result<Value, ToolError> {
        self.fetch(request)
            .await
            .map_err(|err| redact(err, self.api_key.expose()))
    }

    async fn fetch(&self, request: &Request) -> Result<Value, ToolError> {
        let mut query: Vec<(&str, String)> = match &request.location {
            Location::City(city) => vec![("q", city.clone())],
            Location::Coords { lat, lon } => {
                vec![("lat", lat.to_string()), ("lon", lon.to_string())]
            }
        };
        query.push(("units", request.units.as_str().to_owned()));
        if let Some(lang) = &request.lang {
            query.push(("lang", lang.clone()));
        }
        query.push(("appid", self.api_key.expose().to_owned()));

        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&query)
            .send()
            .await
            .map_err(|err| self.transport_error(err))?;

        let status = response.status();
        if status.is_success() {
            let body = self.read_body(response).await?;
            return summarize(&body, request.units);
        }
        let retry_after = retry_after(response.headers());
        // The status alone decides the outcome; the body only adds detail.
        let message = self
            .read_body(response)
            .await
            .ok()
            .and_then(|body| api_message(&body));
        Err(status_error(
            status,
            retry_after,
            message,
            &request.location,
        ))
    }

    async fn read_body(&self, mut response: Response) -> Result<Vec<u8>, ToolError> {
        let too_large = || {
            ToolError::Permanent(format!(
                "unexpected response from weather API: body larger than {MAX_BODY_BYTES} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport_error(err))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, err: reqwest::Error) -> ToolError {
        let err = err.without_url();
        if err.is_timeout() {
            ToolError::retryable(format!(
                "weather API did not answer within {:?}",
                self.timeout
            ))
        } else if err.is_connect() {
            ToolError::retryable(format!(
                "could not connect to weather API: {}",
                describe(&err)
            ))
        } else if err.is_builder() {
            ToolError::Permanent(format!(
                "could not build the weather API request: {}",
                describe(&err)
            ))
        } else {
            ToolError::retryable(format!("weather API request failed: {}", describe(&err)))
        }
    }
}

/// Accepts a base with a path prefix (a proxy mounted under `/owm`), but not
/// one with a query string, which would be silently dropped.
fn endpoint(base_url: &str) -> Result<Url, ConfigError> {
    let invalid = |why: String| ConfigError::InvalidBaseUrl(why);
    let base = Url::parse(base_url.trim()).map_err(|err| invalid(err.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme must be http or https, not {}",
            base.scheme()
        )));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid("must not carry a query string or fragment".into()));
    }
    let joined = format!("{}{ENDPOINT_PATH}", base.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|err| invalid(err.to_string()))
}

/// Only the delay-seconds form: OpenWeather sends that, and an HTTP date
/// would need a clock we cannot trust to match theirs.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// OpenWeather errors look like `{"cod": "400", "message": "wrong latitude"}`.
fn api_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let message = body.get("message")?.as_str()?.trim();
    if message.is_empty() {
        return None;
    }
    Some(message.chars().take(MAX_MESSAGE_CHARS).collect())
}

fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    message: Option<String>,
    location: &Location,
) -> ToolError {
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    match status {
        StatusCode::TOO_MANY_REQUESTS => ToolError::Retryable {
            message: format!("weather API rate limit exceeded (429){detail}"),
            retry_after,
        },
        StatusCode::UNAUTHORIZED => {
            ToolError::Permanent("weather API rejected the API key (401)".into())
        }
        StatusCode::NOT_FOUND => ToolError::Permanent(match location {
            Location::City(city) => format!("city not found: {city}"),
            Location::Coords { lat, lon } => {
                format!("no weather data for lat={lat}, lon={lon} (404)")
            }
        }),
        s if s.is_server_error() => ToolError::Retryable {
            message: format!("weather API server error ({s}){detail}"),
            retry_after,
        },
        s if s.is_client_error() => {
            ToolError::Permanent(format!("weather API returned {s}{detail}"))
        }
        s => ToolError::Permanent(format!(
            "unexpected response from weather API: status {s}{detail}"
        )),
    }
}

/// reqwest's top-level messages ("error sending request") say little; the
/// cause ("Connection refused") is in the source chain.
fn describe(err: &dyn StdError) -> String {
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

/// The last line of defence: whatever built the message, the key leaves masked.
fn redact(err: ToolError, key: &str) -> ToolError {
    let clean = |message: String| {
        if key.is_empty() {
            message
        } else {
            message.replace(key, REDACTED)
        }
    };
    match err {
        ToolError::InvalidArgs(message) => ToolError::InvalidArgs(clean(message)),
        ToolError::Permanent(message) => ToolError::Permanent(clean(message)),
        ToolError::Retryable {
            message,
            retry_after,
        } => ToolError::Retryable {
            message: clean(message),
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_the_endpoint_onto_the_base() {
        let url = endpoint("https://api.openweathermap.org").unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.openweathermap.org/data/2.5/weather"
        );
        let url = endpoint("http://proxy.local/owm/").unwrap();
        assert_eq!(url.as_str(), "http://proxy.local/owm/data/2.5/weather");
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("not a url").is_err());
        assert!(endpoint("http://x/?appid=1").is_err());
    }

    #[test]
    fn maps_statuses() {
        let city = Location::City("Atlantis".into());
        let err = status_error(StatusCode::NOT_FOUND, None, None, &city);
        assert_eq!(err, ToolError::Permanent("city not found: Atlantis".into()));
        let err = status_error(
            StatusCode::BAD_REQUEST,
            None,
            Some("wrong latitude".into()),
            &city,
        );
        assert_eq!(
            err.to_string(),
            "weather API returned 400 Bad Request: wrong latitude"
        );
        let err = status_error(StatusCode::BAD_GATEWAY, None, None, &city);
        assert!(err.is_retryable());
        let err = status_error(StatusCode::MOVED_PERMANENTLY, None, None, &city);
        assert_eq!(err.kind(), "permanent");
    }

    #[test]
    fn reads_retry_after_seconds_only() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn redacts_every_variant() {
        let err = redact(ToolError::retryable("bad appid=k3y!"), "k3y");
        assert_eq!(err.to_string(), "bad appid=***!");
        let err = redact(ToolError::Permanent("k3y".into()), "k3y");
        assert_eq!(err.to_string(), "***");
    }
}
