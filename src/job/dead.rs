//! Dead-set entries: a buried job with its error and time of death.

use serde_json::Value;

use super::ErrorInfo;

/// The start of a dead-set entry; the bury script appends the time of death
/// and the closing brace, so the score and `died_at` agree on Redis's clock.
/// `worker` and `slot` say who buried it; together they name one fetched
/// job, so no two entries are ever the same sorted-set member (two equal
/// payloads buried in the same millisecond would otherwise be one entry).
pub fn dead_entry_prefix(job: &DeadJob<'_>, error: &ErrorInfo, worker: &str, slot: u64) -> String {
    let raw = |raw: &[u8]| Value::String(String::from_utf8_lossy(raw).into_owned()).to_string();
    let job_json = match job {
        DeadJob::Parsed(payload) => (*payload).to_owned(),
        DeadJob::Raw(payload) => raw(payload),
        DeadJob::Truncated(t) => {
            let mut about = serde_json::json!({"bytes": t.bytes, "sha1": t.sha1});
            if let Some(id) = &t.id {
                about["id"] = Value::String(id.clone());
            }
            format!("{},\"truncated\":{about}", raw(t.head))
        }
    };
    let error_json = serde_json::to_string(error).unwrap_or_else(|_| "{}".into());
    let worker = Value::String(worker.to_owned());
    format!("{{\"job\":{job_json},\"error\":{error_json},\"worker\":{worker},\"slot\":{slot},\"died_at\":")
}

/// What a dead entry carries: the job as JSON when it was one, or the raw
/// payload as a string when it was not, cut to its first bytes when long.
pub enum DeadJob<'a> {
    Parsed(&'a str),
    Raw(&'a [u8]),
    /// A raw payload too long to keep: its head, with its size and SHA-1
    /// (and the id, when the head had one) in the entry's `truncated`.
    Truncated(Truncated<'a>),
}

/// A raw payload kept only in part.
pub struct Truncated<'a> {
    /// The first bytes kept.
    pub head: &'a [u8],
    /// The whole payload's length.
    pub bytes: u64,
    /// SHA-1 of the whole payload, lowercase hex.
    pub sha1: String,
    /// The job id read from the head, so `dead list` and lookups find it.
    pub id: Option<String>,
}

impl<'a> DeadJob<'a> {
    /// A raw payload as a dead entry keeps it: whole up to `cap` bytes,
    /// else its first `cap` bytes, size and SHA-1, so a dead set of hostile
    /// payloads stays small.
    pub fn raw(payload: &'a [u8], cap: usize) -> Self {
        if payload.len() <= cap {
            return DeadJob::Raw(payload);
        }
        DeadJob::Truncated(Truncated {
            head: &payload[..cap],
            bytes: payload.len() as u64,
            sha1: sha1_smol::Sha1::from(payload).digest().to_string(),
            id: super::read_head(&payload[..cap]).id,
        })
    }
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

    #[test]
    fn a_long_raw_payload_keeps_its_head_size_and_digest() {
        let err = ErrorInfo {
            kind: "invalid_json".into(),
            message: "m".into(),
        };
        let payload = format!(r#"{{"id":"j1","args":"{}"#, "x".repeat(1000));
        let short = DeadJob::raw(payload.as_bytes(), 2000);
        assert!(matches!(short, DeadJob::Raw(_)));
        let entry = dead_entry_prefix(&DeadJob::raw(payload.as_bytes(), 20), &err, "w", 1) + "5}";
        let v: Value = serde_json::from_str(&entry).unwrap();
        assert_eq!(v["job"], json!(&payload[..20]));
        assert_eq!(v["truncated"]["bytes"], json!(payload.len()));
        assert_eq!(v["truncated"]["id"], json!("j1"));
        // sha1 of the whole payload, as Redis's sha1hex gives it.
        let sha1 = v["truncated"]["sha1"].as_str().unwrap();
        assert_eq!(sha1, sha1_smol::Sha1::from(&payload).digest().to_string());
        assert_eq!(sha1.len(), 40);
        assert!(entry.len() < 300, "{entry}");
    }
}
