//! A string that must never reach a log line, an error message or a result.
//!
//! API keys travel through configuration structs that are routinely printed
//! with `{:?}` while debugging start-up; wrapping them makes the safe thing the
//! default, and reading the value takes an explicit, greppable `expose()`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What [`Secret`] prints instead of its value.
pub const REDACTED: &str = "***";

/// A secret value. It serializes as [`REDACTED`], like its `Debug` and
/// `Display`: writing a configuration back out (`toolq config`) must not be
/// able to leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that has to send it (an HTTP query,
    /// an AUTH command). Keep the result out of `format!`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty or blank, which configuration treats as
    /// "not set" (`OPENWEATHER_API_KEY=` in a shell or compose file).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
    }

    #[test]
    fn deserialises_from_a_string() {
        let secret: Secret = serde_json::from_str("\"abc123\"").unwrap();
        assert_eq!(secret.expose(), "abc123");
        assert!(serde_json::from_str::<Secret>("42").is_err());
    }

    #[test]
    fn blank_means_unset() {
        assert!(Secret::new("  ").is_blank());
        assert!(!Secret::new("k").is_blank());
    }
}
