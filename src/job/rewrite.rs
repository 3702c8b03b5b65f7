//! Rewriting a payload for its next attempt, and reading the recovery
//! count it leads with, both without losing the producer's fields.

use serde_json::{Map, Value};

use super::JobError;

/// Rewrites a payload for its next attempt: every field the producer wrote is
/// kept, `attempt` and `id` are set, and `recoveries` leads the object so the
/// recovery script can raise it without a JSON parser.
pub fn rewrite_payload(
    payload: &[u8],
    id: &str,
    attempt: u32,
    recoveries: u32,
) -> Result<String, JobError> {
    let mut obj: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| JobError::InvalidJson(e.to_string()))?;
    obj.remove("recoveries");
    obj.insert("id".into(), Value::String(id.to_owned()));
    obj.insert("attempt".into(), Value::from(attempt));
    let body = serde_json::to_string(&obj).map_err(|e| JobError::InvalidJson(e.to_string()))?;
    if recoveries == 0 {
        return Ok(body);
    }
    // `obj` holds at least `id`, so `body` is `{...}` with a first field.
    Ok(format!("{{\"recoveries\":{recoveries},{}", &body[1..]))
}

/// How many times a payload was recovered from a dead worker, read from the
/// leading field [`rewrite_payload`] and the recovery script write, without
/// parsing the whole payload.
pub fn recoveries_of(payload: &[u8]) -> u32 {
    let Some(rest) = payload.strip_prefix(b"{\"recoveries\":") else {
        return 0;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recoveries_are_read_from_the_leading_field() {
        assert_eq!(recoveries_of(br#"{"recoveries":3,"tool":"x"}"#), 3);
        assert_eq!(recoveries_of(br#"{"recoveries":12}"#), 12);
        assert_eq!(recoveries_of(br#"{"tool":"x","recoveries":3}"#), 0);
        assert_eq!(recoveries_of(br#"{"recoveries":"3"}"#), 0);
        assert_eq!(recoveries_of(b"not json"), 0);
        let p = rewrite_payload(br#"{"tool":"x","args":{}}"#, "i", 0, 2).unwrap();
        assert_eq!(recoveries_of(p.as_bytes()), 2);
    }

    #[test]
    fn rewrite_keeps_unknown_fields_and_leads_with_recoveries() {
        let raw = br#"{"tool":"echo","args":{"n":12345678901234567},"custom":true}"#;
        let out = rewrite_payload(raw, "id1", 2, 3).unwrap();
        assert!(out.starts_with(r#"{"recoveries":3,"#), "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["custom"], json!(true));
        assert_eq!(v["attempt"], json!(2));
        assert_eq!(v["id"], json!("id1"));
        assert_eq!(v["args"]["n"], json!(12345678901234567u64));
        let plain = rewrite_payload(raw, "id1", 1, 0).unwrap();
        assert!(!plain.contains("recoveries"));
    }
}
