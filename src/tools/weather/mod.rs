//! `weather`: current conditions from OpenWeather (or any service speaking
//! its `/data/2.5/weather` API).
//!
//! Jobs give `{"city": "London"}` or `{"lat": 51.5, "lon": -0.13}`, with
//! optional `units` (`metric`, `imperial`, `standard`) and `lang`. The output
//! is a compact, stable JSON object, so producers do not depend on
//! OpenWeather's full body.
//!
//! - `args`: the job arguments, checked into a typed request.
//! - `client`: the HTTP call and the failure mapping (retryable or not).
//! - `response`: OpenWeather's body reduced to the output.
//! - `config`: `tools.weather` in the configuration.

mod args;
mod client;
mod config;
mod response;

#[cfg(feature = "test-tools")]
pub(crate) use args::Units;
#[cfg(feature = "test-tools")]
pub(crate) use response::summarize;

pub use config::{WeatherConfig, DEFAULT_BASE_URL, DEFAULT_CACHE_TTL, DEFAULT_TIMEOUT};

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use self::client::WeatherClient;
use super::{JobContext, Tool, ToolError};

/// The name jobs use.
pub const NAME: &str = "weather";

/// What a job naming `weather` fails with when no key is configured: the
/// operator learns the fix from the dead set instead of from a stream of 401s.
pub const NOT_CONFIGURED: &str = "weather tool is not configured: set OPENWEATHER_API_KEY";

/// Headroom over the HTTP timeout, so the worker's per-attempt limit fires
/// only if the HTTP timeout somehow did not, and the clearer error wins.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// Why the tool could not be built from its configuration. Each message names
/// the configuration key, since start-up stops on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{NOT_CONFIGURED}")]
    MissingApiKey,
    #[error("tools.weather.base_url: {0}")]
    InvalidBaseUrl(String),
    #[error("tools.weather.timeout_ms: must be greater than zero")]
    ZeroTimeout,
    #[error("tools.weather: cannot build the HTTP client: {0}")]
    Client(String),
}

/// One instance serves every job of the process; its HTTP client keeps a
/// connection pool, so keep one tool and share it.
#[derive(Debug)]
pub struct WeatherTool {
    client: WeatherClient,
    request_timeout: Duration,
    cache_ttl: Duration,
}

impl WeatherTool {
    /// Fails without an API key, with [`ConfigError::MissingApiKey`]; a blank
    /// key counts as none.
    pub fn new(config: WeatherConfig) -> Result<Self, ConfigError> {
        let api_key = config
            .api_key
            .filter(|key| !key.is_blank())
            .ok_or(ConfigError::MissingApiKey)?;
        Ok(WeatherTool {
            client: WeatherClient::new(&config.base_url, api_key, config.timeout)?,
            request_timeout: config.timeout,
            cache_ttl: config.cache_ttl,
        })
    }

    /// For start-up: `Ok(None)` when no key is set (the tool is simply not
    /// registered and jobs get [`NOT_CONFIGURED`]), but a key with a broken
    /// base URL or timeout is still an error, so a typo cannot hide.
    pub fn from_config(config: WeatherConfig) -> Result<Option<Self>, ConfigError> {
        match Self::new(config) {
            Ok(tool) => Ok(Some(tool)),
            Err(ConfigError::MissingApiKey) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl Tool for WeatherTool {
    fn name(&self) -> &str {
        NAME
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        args::parse(args).map(|_| ())
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        let request = args::parse(args)?;
        self.client.current(&request).await
    }

    fn timeout(&self) -> Duration {
        self.request_timeout + TIMEOUT_MARGIN
    }

    fn description(&self) -> String {
        "Current weather from an OpenWeather-compatible API, by `city` or `lat`/`lon`; cached in Redis.".into()
    }

    fn input_schema(&self) -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": args::MAX_CITY_CHARS},
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
                "units": {"type": "string", "enum": ["metric", "imperial", "standard"]},
                "lang": {"type": "string", "maxLength": 10}
            },
            "additionalProperties": false,
            "oneOf": [{"required": ["city"]}, {"required": ["lat", "lon"]}]
        })
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    fn secrets(&self) -> Vec<super::Secret> {
        vec![self.client.api_key().clone()]
    }

    /// A zero TTL turns caching off rather than writing entries that expire
    /// at once.
    fn cache_ttl(&self) -> Option<Duration> {
        Some(self.cache_ttl).filter(|ttl| !ttl.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::secret::Secret;

    fn config(key: Option<&str>) -> WeatherConfig {
        WeatherConfig {
            api_key: key.map(Secret::from),
            ..WeatherConfig::default()
        }
    }

    #[test]
    fn needs_a_key() {
        assert_eq!(
            WeatherTool::new(config(None)).unwrap_err(),
            ConfigError::MissingApiKey
        );
        assert_eq!(ConfigError::MissingApiKey.to_string(), NOT_CONFIGURED);
        assert!(WeatherTool::from_config(config(Some(" ")))
            .unwrap()
            .is_none());
        assert!(WeatherTool::from_config(config(Some("k")))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_key_with_a_broken_base_url_is_still_an_error() {
        let cfg = WeatherConfig {
            base_url: "ftp://example.com".into(),
            ..config(Some("k"))
        };
        let err = WeatherTool::from_config(cfg).unwrap_err();
        assert!(err.to_string().starts_with("tools.weather.base_url:"));
        let cfg = WeatherConfig {
            timeout: Duration::ZERO,
            ..config(Some("k"))
        };
        assert_eq!(WeatherTool::new(cfg).unwrap_err(), ConfigError::ZeroTimeout);
    }

    #[test]
    fn limits_follow_the_config() {
        let cfg = WeatherConfig {
            timeout: Duration::from_secs(3),
            cache_ttl: Duration::ZERO,
            ..config(Some("secret-key-123"))
        };
        let tool = WeatherTool::new(cfg).unwrap();
        assert_eq!(tool.name(), "weather");
        assert_eq!(tool.timeout(), Duration::from_secs(5));
        assert_eq!(tool.cache_ttl(), None);
        assert!(!format!("{tool:?}").contains("secret-key-123"));
        let tool = WeatherTool::new(config(Some("k"))).unwrap();
        assert_eq!(tool.cache_ttl(), Some(Duration::from_secs(600)));
    }
}
