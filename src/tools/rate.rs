//! `rate_limit = "60/min"`: how often a tool may be called across every
//! worker sharing one Redis.
//!
//! Only the value lives here, so configuration can reject a typo at start-up;
//! the worker enforces it in Redis around the call (tools know nothing of
//! Redis).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most `max` calls in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn new(max: u32, per: Duration) -> Self {
        RateLimit { max, per }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit {input:?}: expected COUNT/UNIT such as \"60/min\", \"5/s\" or \"1000/h\" with COUNT at least 1")]
pub struct RateLimitError {
    input: String,
}

impl FromStr for RateLimit {
    type Err = RateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || RateLimitError {
            input: text.chars().take(40).collect(),
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let max: u32 = count.trim().parse().map_err(|_| invalid())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        if max == 0 {
            return Err(invalid());
        }
        Ok(RateLimit { max, per })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            _ => format!("{}ms", self.per.as_millis()),
        };
        write!(f, "{}/{unit}", self.max)
    }
}

/// As written in the configuration (`"60/min"`).
impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_count_per_unit() {
        let parse = |s: &str| s.parse::<RateLimit>();
        assert_eq!(
            parse("60/min"),
            Ok(RateLimit::new(60, Duration::from_secs(60)))
        );
        assert_eq!(
            parse(" 5 / s "),
            Ok(RateLimit::new(5, Duration::from_secs(1)))
        );
        assert_eq!(
            parse("1000/h"),
            Ok(RateLimit::new(1000, Duration::from_secs(3600)))
        );
        for bad in ["", "60", "0/s", "-1/s", "5/day", "x/min", "5/"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            RateLimit::new(60, Duration::from_secs(60)).to_string(),
            "60/min"
        );
    }

    #[test]
    fn deserializes_from_a_string() {
        let limit: RateLimit = serde_json::from_str(r#""10/s""#).unwrap();
        assert_eq!(limit, RateLimit::new(10, Duration::from_secs(1)));
        let err = serde_json::from_str::<RateLimit>(r#""10 per second""#).unwrap_err();
        assert!(err.to_string().contains("expected COUNT/UNIT"));
    }
}
