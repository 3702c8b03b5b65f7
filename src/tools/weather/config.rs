//! `tools.weather` in the configuration.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::tools::secret::Secret;

pub const DEFAULT_BASE_URL: &str = "https://api.openweathermap.org";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Current conditions change slowly and OpenWeather's free tier is rate
/// limited, so ten minutes of reuse costs little accuracy and saves calls.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);

/// Durations accept seconds (`10`, `0.5`) or a number with a unit (`"500ms"`,
/// `"10s"`, `"2m"`, `"1h"`), so both TOML and `TOOLQ_*` variables read
/// naturally. Unknown keys are rejected: a misspelt `base_url` would
/// otherwise silently send jobs to the real API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeatherConfig {
    /// Without a key the tool is not registered; jobs naming it fail with
    /// [`super::NOT_CONFIGURED`] instead of burning retries on 401s.
    pub api_key: Option<Secret>,
    /// Overridable so tests, proxies and OpenWeather-compatible services can
    /// stand in for the real API.
    pub base_url: String,
    /// Per HTTP request; the tool's own per-attempt limit sits a little above
    /// it so the clearer HTTP timeout error wins.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// How long the worker may reuse an answer; 0 turns caching off.
    #[serde(deserialize_with = "duration")]
    pub cache_ttl: Duration,
    /// Carried for the worker's rate limiter (e.g. `"60/min"`); tools know
    /// nothing of Redis, so the limit is enforced around the call, not here.
    pub rate_limit: Option<String>,
}

impl Default for WeatherConfig {
    fn default() -> Self {
        WeatherConfig {
            api_key: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            rate_limit: None,
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("seconds as a number, or a string such as \"500ms\", \"10s\", \"2m\"")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(secs).map_err(|_| E::custom(format!("invalid duration {secs}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse_duration(text).ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cfg: WeatherConfig = serde_json::from_str("{}").unwrap();
        assert!(cfg.api_key.is_none());
        assert_eq!(cfg.base_url, DEFAULT_BASE_URL);
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.cache_ttl, Duration::from_secs(600));
        assert!(cfg.rate_limit.is_none());
    }

    #[test]
    fn reads_durations_in_several_forms() {
        let cfg: WeatherConfig = serde_json::from_str(
            r#"{"api_key":"k","timeout":"250ms","cache_ttl":2.5,"rate_limit":"60/min"}"#,
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!(cfg.cache_ttl, Duration::from_millis(2500));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("10 parsecs"), None);
        assert!(serde_json::from_str::<WeatherConfig>(r#"{"timeout":-1}"#).is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_hides_the_key() {
        assert!(serde_json::from_str::<WeatherConfig>(r#"{"base_ulr":"x"}"#).is_err());
        let cfg: WeatherConfig = serde_json::from_str(r#"{"api_key":"topsecret"}"#).unwrap();
        assert!(!format!("{cfg:?}").contains("topsecret"));
    }
}
