//! The options a job, a follow-up template and a schedule's job template
//! share, checked in one place: a value one of them takes, all of them
//! take, so a template never makes a job the worker would refuse.

use serde_json::Value;

use super::MAX_RESULT_TTL_S;

/// The shared options, borrowed from whichever of the three holds them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub result_ttl_s: Option<u64>,
    pub meta: Option<&'a Value>,
}

/// An option out of its range: which, and what it must be (each caller
/// words the message its users read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub field: &'static str,
    pub must_be: &'static str,
}

impl Options<'_> {
    pub fn check(&self) -> Result<(), OutOfRange> {
        let out = |field, must_be| Err(OutOfRange { field, must_be });
        if self.max_attempts == Some(0) {
            return out("max_attempts", "at least 1");
        }
        // A zero timeout would fail every attempt before the tool starts.
        if self.timeout_ms == Some(0) {
            return out("timeout_ms", "at least 1");
        }
        if self.result_ttl_s.is_some_and(|t| t > MAX_RESULT_TTL_S) {
            return out("result_ttl_s", "at most 315360000 (ten years)");
        }
        if self.meta.is_some_and(|m| !m.is_object()) {
            return out("meta", "an object");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_option_s_bounds_are_named() {
        let meta = Value::from("m");
        let object = serde_json::json!({"k": 1});
        let cases = [
            (
                Options {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                Some("max_attempts"),
            ),
            (
                Options {
                    timeout_ms: Some(0),
                    ..Default::default()
                },
                Some("timeout_ms"),
            ),
            (
                Options {
                    result_ttl_s: Some(MAX_RESULT_TTL_S + 1),
                    ..Default::default()
                },
                Some("result_ttl_s"),
            ),
            (
                Options {
                    meta: Some(&meta),
                    ..Default::default()
                },
                Some("meta"),
            ),
            (
                Options {
                    max_attempts: Some(1),
                    timeout_ms: Some(1),
                    result_ttl_s: Some(MAX_RESULT_TTL_S),
                    meta: Some(&object),
                },
                None,
            ),
        ];
        for (options, refused) in cases {
            assert_eq!(
                options.check().err().map(|e| e.field),
                refused,
                "{options:?}"
            );
        }
    }
}
