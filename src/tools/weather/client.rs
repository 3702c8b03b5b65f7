//! The HTTP side: one pooled client for the whole process, the request, and
//! the mapping of every failure to a [`ToolError`] that says whether a retry
//! can help.
//!
//! The API key travels in the query string, and reqwest puts the full URL in
//! its errors, so every error leaves through [`redact`]: URLs are stripped
//! where they arise and any remaining copy of the key is masked.

use std::time::Duration;

use reqwest::{Response, StatusCode, Url};
use serde_json::Value;

use super::args::{Location, Request};
use super::response::summarize;
use super::ConfigError;
use crate::tools::http::exchange::{self, describe, retry_after};
use crate::tools::secret::{Secret, REDACTED};
use crate::tools::ToolError;

const ENDPOINT_PATH: &str = "/data/2.5/weather";
/// How errors name the remote.
const SERVICE: &str = "weather API";
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
        // OpenWeather never redirects; one would replay the key elsewhere.
        let http = exchange::client(timeout)
            .map_err(|err| ConfigError::Client(describe(&err.without_url())))?;
        Ok(WeatherClient {
            http,
            endpoint,
            api_key,
            timeout,
        })
    }

    /// The key, for the worker's scrubber (never for a message).
    pub fn api_key(&self) -> &Secret {
        &self.api_key
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
            .and_then(|body| api_message(&body, self.api_key.expose()));
        Err(status_error(
            status,
            retry_after,
            message,
            &request.location,
        ))
    }

    async fn read_body(&self, response: Response) -> Result<Vec<u8>, ToolError> {
        exchange::read_body(response, MAX_BODY_BYTES, SERVICE, self.timeout).await
    }

    fn transport_error(&self, err: reqwest::Error) -> ToolError {
        exchange::transport_error(err, SERVICE, self.timeout)
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

/// OpenWeather errors look like `{"cod": "400", "message": "wrong latitude"}`.
/// The key is masked before the message is cut: a cut through the key would
/// leave its first characters, which no later masking can recognise.
fn api_message(body: &[u8], key: &str) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let message = body.get("message")?.as_str()?.trim();
    if message.is_empty() {
        return None;
    }
    let masked = mask(message.to_owned(), key);
    Some(masked.chars().take(MAX_MESSAGE_CHARS).collect())
}

fn mask(message: String, key: &str) -> String {
    if key.is_empty() {
        message
    } else {
        message.replace(key, REDACTED)
    }
}

/// The weather API's own statuses (a rejected key, an unknown place), then
/// the rules every HTTP tool shares.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    message: Option<String>,
    location: &Location,
) -> ToolError {
    match status {
        StatusCode::UNAUTHORIZED => {
            ToolError::Permanent("weather API rejected the API key (401)".into())
        }
        StatusCode::NOT_FOUND => ToolError::Permanent(match location {
            Location::City(city) => format!("city not found: {city}"),
            Location::Coords { lat, lon } => {
                format!("no weather data for lat={lat}, lon={lon} (404)")
            }
        }),
        s => exchange::status_error(s, retry_after, message, SERVICE),
    }
}

/// The last line of defence: whatever built the message, the key leaves masked.
fn redact(err: ToolError, key: &str) -> ToolError {
    err.map_message(|message| mask(message, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, RETRY_AFTER};
    use serde_json::json;

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
    fn masks_the_key_before_cutting_the_message() {
        let key = "TESTKEY-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
        let body = json!({"cod": "400", "message": format!("{} {key}", "x".repeat(190))});
        let message = api_message(body.to_string().as_bytes(), key).unwrap();
        assert_eq!(message, format!("{} ***", "x".repeat(190)));
        assert!(!message.contains(&key[..4]), "{message}");
    }

    #[test]
    fn redacts_every_variant() {
        let err = redact(ToolError::retryable("bad appid=k3y!"), "k3y");
        assert_eq!(err.to_string(), "bad appid=***!");
        let err = redact(ToolError::Permanent("k3y".into()), "k3y");
        assert_eq!(err.to_string(), "***");
    }
}
