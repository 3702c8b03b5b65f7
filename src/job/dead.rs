//! Dead-set entries: a buried job with its error and time of death.

use serde_json::Value;

use super::ErrorInfo;

/// The start of a dead-set entry; the bury script appends the time of death
/// and the closing brace, so the score and `died_at` agree on Redis's clock.
/// `worker` and `slot` say who buried it; together they name one fetched
/// job, so no two entries are ever the same sorted-set member (two equal
/// payloads buried in the same millisecond would otherwise be one entry).
pub fn dead_entry_prefix(job: &DeadJob<'_>, error: &ErrorInfo, worker: &str, slot: u64) -> String {
    let job_json = match job {
        DeadJob::Parsed(payload) => (*payload).to_owned(),
        DeadJob::Raw(raw) => Value::String(String::from_utf8_lossy(raw).into_owned()).to_string(),
    };
    let error_json = serde_json::to_string(error).unwrap_or_else(|_| "{}".into());
    let worker = Value::String(worker.to_owned());
    format!("{{\"job\":{job_json},\"error\":{error_json},\"worker\":{worker},\"slot\":{slot},\"died_at\":")
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
        let entry = dead_entry_prefix(&DeadJob::Raw(b"not \"json"), &err, "w\"1", 3) + "17}";
        let v: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(v["job"], json!("not \"json"));
        assert_eq!(v["died_at"], json!(17));
        assert_eq!((&v["worker"], &v["slot"]), (&json!("w\"1"), &json!(3)));
        let entry = dead_entry_prefix(&DeadJob::Parsed(r#"{"tool":"x"}"#), &err, "w", 0) + "1}";
        let v: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(v["job"]["tool"], json!("x"));
        assert_eq!(v["error"]["kind"], json!("invalid_json"));
    }
}
