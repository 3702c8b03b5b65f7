//! Dead-set entries: a buried job with its error and time of death.

use serde_json::Value;

use super::ErrorInfo;

/// The start of a dead-set entry; the bury script appends the time of death
/// and the closing brace, so the score and `died_at` agree on Redis's clock.
pub fn dead_entry_prefix(job: &DeadJob<'_>, error: &ErrorInfo) -> String {
    let job_json = match job {
        DeadJob::Parsed(payload) => (*payload).to_owned(),
        DeadJob::Raw(raw) => Value::String(String::from_utf8_lossy(raw).into_owned()).to_string(),
    };
    let error_json = serde_json::to_string(error).unwrap_or_else(|_| "{}".into());
    format!("{{\"job\":{job_json},\"error\":{error_json},\"died_at\":")
}

/// What a dead entry carries: the job as JSON when it was one, or the raw
/// payload as a string when it was not.
pub enum DeadJob<'a> {
    Parsed(&'a str),
    Raw(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dead_entry_embeds_raw_payloads_as_strings() {
        let err = ErrorInfo {
            kind: "invalid_json".into(),
            message: "m".into(),
        };
        let entry = dead_entry_prefix(&DeadJob::Raw(b"not \"json"), &err) + "17}";
        let v: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(v["job"], json!("not \"json"));
        assert_eq!(v["died_at"], json!(17));
        let entry = dead_entry_prefix(&DeadJob::Parsed(r#"{"tool":"x"}"#), &err) + "1}";
        let v: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(v["job"]["tool"], json!("x"));
        assert_eq!(v["error"]["kind"], json!("invalid_json"));
    }
}
