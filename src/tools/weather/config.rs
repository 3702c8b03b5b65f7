//! `tools.weather` in the configuration.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::tools::rate::RateLimit;
use crate::tools::secret::Secret;

pub const DEFAULT_BASE_URL: &str = "https://api.openweathermap.org";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Current conditions change slowly and OpenWeather's free tier is rate
/// limited, so ten minutes of reuse costs little accuracy and saves calls.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);

/// Durations take a bare number in the unit their name says
/// (`timeout_ms = 2500`, `cache_ttl_s = 600`) or a string with a unit
/// (`"500ms"`, `"10s"`, `"2m"`, `"1h"`), so both TOML and `TOOLQ_*` variables
/// read naturally. Unknown keys are rejected: a misspelt `base_url` would
/// otherwise silently send jobs to the real API.
/// `Serialize` writes the keys as the file spells them (`timeout_ms`,
/// `cache_ttl_s`), the API key masked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawWeatherConfig")]
pub struct WeatherConfig {
    /// Without a key the tool is not registered; jobs naming it fail with
    /// [`super::NOT_CONFIGURED`] instead of burning retries on 401s.
    pub api_key: Option<Secret>,
    /// Overridable so tests, proxies and OpenWeather-compatible services can
    /// stand in for the real API.
    pub base_url: String,
    /// Per HTTP request (`timeout_ms`); the tool's own per-attempt limit sits
    /// a little above it so the clearer HTTP timeout error wins.
    #[serde(rename = "timeout_ms", serialize_with = "as_millis")]
    pub timeout: Duration,
    /// How long the worker may reuse an answer (`cache_ttl_s`); 0 turns
    /// caching off.
    #[serde(rename = "cache_ttl_s", serialize_with = "as_seconds")]
    pub cache_ttl: Duration,
    /// Calls allowed across all workers; tools know nothing of Redis, so the
    /// worker enforces it around the call, not here.
    pub rate_limit: Option<RateLimit>,
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

/// `[tools.weather]` as written. `timeout` and `cache_ttl` are the names
/// before the unit joined them (a bare number there means seconds); they
/// still work, but not together with the new name.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWeatherConfig {
    api_key: Option<Secret>,
    base_url: Option<String>,
    #[serde(deserialize_with = "millis")]
    timeout_ms: Option<Duration>,
    #[serde(deserialize_with = "seconds")]
    timeout: Option<Duration>,
    #[serde(deserialize_with = "seconds")]
    cache_ttl_s: Option<Duration>,
    #[serde(deserialize_with = "seconds")]
    cache_ttl: Option<Duration>,
    rate_limit: Option<RateLimit>,
}

impl TryFrom<RawWeatherConfig> for WeatherConfig {
    type Error = String;

    fn try_from(raw: RawWeatherConfig) -> Result<Self, String> {
        let one_of =
            |new: Option<Duration>, old: Option<Duration>, names: [&str; 2], default| match (
                new, old,
            ) {
                (Some(_), Some(_)) => Err(format!(
                    "give {} or its old name {}, not both",
                    names[0], names[1]
                )),
                (new, old) => Ok(new.or(old).unwrap_or(default)),
            };
        Ok(WeatherConfig {
            api_key: raw.api_key,
            base_url: raw.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            timeout: one_of(
                raw.timeout_ms,
                raw.timeout,
                ["timeout_ms", "timeout"],
                DEFAULT_TIMEOUT,
            )?,
            cache_ttl: one_of(
                raw.cache_ttl_s,
                raw.cache_ttl,
                ["cache_ttl_s", "cache_ttl"],
                DEFAULT_CACHE_TTL,
            )?,
            rate_limit: raw.rate_limit,
        })
    }
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn as_seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer
        .deserialize_any(DurationVisitor { bare_ms: true })
        .map(Some)
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer
        .deserialize_any(DurationVisitor { bare_ms: false })
        .map(Some)
}

/// `bare_ms`: whether a number without a unit counts milliseconds (else
/// seconds).
struct DurationVisitor {
    bare_ms: bool,
}

impl DurationVisitor {
    fn bare(&self, number: f64) -> Option<Duration> {
        let secs = if self.bare_ms {
            number / 1000.0
        } else {
            number
        };
        Duration::try_from_secs_f64(secs).ok()
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.bare_ms {
            "milliseconds"
        } else {
            "seconds"
        };
        write!(
            f,
            "{unit} as a number, or a string such as \"500ms\", \"10s\", \"2m\""
        )
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        Ok(if self.bare_ms {
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        })
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        u64::try_from(n)
            .map_err(|_| E::custom("a duration cannot be negative"))
            .and_then(|n| self.visit_u64(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        self.bare(n)
            .ok_or_else(|| E::custom(format!("invalid duration {n}")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let parsed = match text.trim().parse::<f64>() {
            Ok(n) => self.bare(n),
            Err(_) => parse_duration(text),
        };
        parsed.ok_or_else(|| E::invalid_value(de::Unexpected::Str(text), &self))
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
    fn reads_durations_in_the_unit_of_their_name() {
        let cfg: WeatherConfig = serde_json::from_str(
            r#"{"api_key":"k","timeout_ms":250,"cache_ttl_s":2.5,"rate_limit":"60/min"}"#,
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!(cfg.cache_ttl, Duration::from_millis(2500));
        assert_eq!(
            cfg.rate_limit,
            Some(RateLimit::new(60, Duration::from_secs(60)))
        );
        let cfg: WeatherConfig =
            serde_json::from_str(r#"{"timeout_ms":"2s","cache_ttl_s":"500ms"}"#).unwrap();
        assert_eq!(cfg.timeout, Duration::from_secs(2));
        assert_eq!(cfg.cache_ttl, Duration::from_millis(500));
        // Environment variables arrive as strings.
        let cfg: WeatherConfig = serde_json::from_str(r#"{"timeout_ms":"1500"}"#).unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10 parsecs"), None);
        assert!(serde_json::from_str::<WeatherConfig>(r#"{"timeout_ms":-1}"#).is_err());
        assert!(serde_json::from_str::<WeatherConfig>(r#"{"rate_limit":"lots"}"#).is_err());
    }

    #[test]
    fn old_names_still_mean_seconds() {
        let cfg: WeatherConfig =
            serde_json::from_str(r#"{"timeout":"250ms","cache_ttl":7}"#).unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!(cfg.cache_ttl, Duration::from_secs(7));
        let err = serde_json::from_str::<WeatherConfig>(r#"{"timeout":1,"timeout_ms":1000}"#)
            .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_hides_the_key() {
        assert!(serde_json::from_str::<WeatherConfig>(r#"{"base_ulr":"x"}"#).is_err());
        let cfg: WeatherConfig = serde_json::from_str(r#"{"api_key":"topsecret"}"#).unwrap();
        assert!(!format!("{cfg:?}").contains("topsecret"));
    }
}
