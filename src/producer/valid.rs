//! A job that passed the producer's checks, kept as the object its author
//! wrote so that unknown fields survive the trip (the wire format promises
//! they are kept).

use serde_json::{Map, Value};

use crate::job::{self, FollowUp, Job, ParseLimits};
use crate::queue::EnqueueItem;

/// A validated job object, ready to be given an id and enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    fields: Map<String, Value>,
}

impl ValidJob {
    /// Parses and checks one JSON job; the error says what is wrong, in
    /// words fit for `line N: <what>`.
    pub fn parse(text: &[u8], limits: ParseLimits) -> Result<ValidJob, String> {
        let typed = job::parse(text, limits).map_err(|e| e.to_string())?;
        check(&typed)?;
        let fields: Map<String, Value> =
            serde_json::from_slice(text).map_err(|e| format!("payload is not valid JSON: {e}"))?;
        Ok(ValidJob { fields })
    }

    /// Checks a job built in Rust (its types are right by construction, its
    /// values may not be).
    pub fn from_job(job: &Job) -> Result<ValidJob, String> {
        check(job)?;
        match serde_json::to_value(job) {
            Ok(Value::Object(fields)) => Ok(ValidJob { fields }),
            Ok(_) => Err("job is not a JSON object".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The id the author gave, if any.
    pub fn id(&self) -> Option<&str> {
        self.fields.get("id").and_then(Value::as_str)
    }

    pub fn tool(&self) -> &str {
        self.fields
            .get("tool")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn args(&self) -> &Value {
        self.fields.get("args").unwrap_or(&Value::Null)
    }

    /// The tools its follow-ups name, with where (`on_success`,
    /// `on_success.on_failure`, ...): the catalog checks their names (their
    /// args may hold placeholders, so not against the tools' schemas).
    pub fn follow_up_tools(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for field in ["on_success", "on_failure"] {
            if let Some(Ok(t)) = self.fields.get(field).map(FollowUp::from_value) {
                out.extend(
                    t.tools(field)
                        .into_iter()
                        .map(|(at, tool)| (at, tool.to_owned())),
                );
            }
        }
        out
    }

    /// The queues its follow-ups (and theirs) name; see [`FollowUp::queues`].
    pub fn follow_up_queues(&self) -> Vec<String> {
        let mut out = Vec::new();
        for field in ["on_success", "on_failure"] {
            if let Some(Ok(t)) = self.fields.get(field).map(FollowUp::from_value) {
                out.extend(t.queues().into_iter().map(str::to_owned));
            }
        }
        out
    }

    pub fn unique_key(&self) -> Option<&str> {
        self.fields.get("unique_key").and_then(Value::as_str)
    }

    /// Sets `field` unless the job already has it (`--max-attempts` and
    /// `--timeout-ms` are defaults for lines that lack them).
    pub fn set_default(&mut self, field: &str, value: impl Into<Value>) {
        if !self.fields.contains_key(field) {
            self.fields.insert(field.to_owned(), value.into());
        }
    }

    /// Assigns what the producer owns (`id` when absent, `enqueued_at`, and
    /// `batch` when the job will be awaited) and serialises the job.
    pub(crate) fn into_item(mut self, batch: Option<&str>, now_ms: u64) -> EnqueueItem {
        let id = match self.id() {
            Some(id) => id.to_owned(),
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                self.fields.insert("id".into(), Value::String(id.clone()));
                id
            }
        };
        self.set_default("enqueued_at", now_ms);
        if let Some(b) = batch {
            self.fields
                .insert("batch".into(), Value::String(b.to_owned()));
        }
        let run_at = self.fields.get("run_at").and_then(Value::as_u64);
        let unique_key = self.unique_key().map(str::to_owned);
        EnqueueItem {
            id,
            payload: Value::Object(self.fields).to_string(),
            run_at,
            unique_key,
        }
    }
}

/// What the wire format's types cannot say.
pub(crate) fn check(job: &Job) -> Result<(), String> {
    if job.tool.trim().is_empty() {
        return Err("job field `tool` must not be empty".into());
    }
    job.options()
        .check()
        .map_err(|e| format!("job field `{}` must be {}", e.field, e.must_be))?;
    if job.id.as_deref().is_some_and(str::is_empty) {
        return Err("job field `id` must not be empty".into());
    }
    if job.unique_key.as_deref().is_some_and(str::is_empty) {
        return Err("job field `unique_key` must not be empty".into());
    }
    for (field, t) in [
        ("on_success", &job.on_success),
        ("on_failure", &job.on_failure),
    ] {
        if let Some(t) = t {
            t.check(1)
                .map_err(|e| format!("job field `{field}` is not a valid follow-up: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Result<ValidJob, String> {
        ValidJob::parse(s.as_bytes(), ParseLimits::default())
    }

    #[test]
    fn keeps_unknown_fields_and_assigns_what_the_producer_owns() {
        let job = parse(r#"{"tool":"echo","args":{},"custom":[1]}"#).unwrap();
        let item = job.into_item(Some("b1"), 42);
        let v: Value = serde_json::from_str(&item.payload).unwrap();
        assert_eq!(v["custom"], json!([1]));
        assert_eq!(v["enqueued_at"], json!(42));
        assert_eq!(v["batch"], json!("b1"));
        assert_eq!(v["id"], json!(item.id));
        assert_eq!(
            uuid::Uuid::parse_str(&item.id).unwrap().get_version_num(),
            7
        );
    }

    #[test]
    fn keeps_the_authors_id_and_routing_fields() {
        let job =
            parse(r#"{"tool":"echo","args":{},"id":"x","run_at":5,"unique_key":"u"}"#).unwrap();
        let item = job.into_item(None, 1);
        assert_eq!(item.id, "x");
        assert_eq!(item.run_at, Some(5));
        assert_eq!(item.unique_key.as_deref(), Some("u"));
        assert!(!item.payload.contains("batch"));
    }

    #[test]
    fn defaults_do_not_override_the_line() {
        let mut job = parse(r#"{"tool":"echo","args":{},"max_attempts":2}"#).unwrap();
        job.set_default("max_attempts", 9);
        job.set_default("timeout_ms", 100);
        let v: Value = serde_json::from_str(&job.into_item(None, 1).payload).unwrap();
        assert_eq!(v["max_attempts"], json!(2));
        assert_eq!(v["timeout_ms"], json!(100));
    }

    #[test]
    fn a_job_built_in_rust_is_held_to_the_wire_format_s_bounds() {
        let mut job = Job::new("echo", json!({}));
        job.meta = Some(json!("m"));
        assert_eq!(
            ValidJob::from_job(&job).unwrap_err(),
            "job field `meta` must be an object"
        );
        // A Rust-built job gets the wire format's bounds too: Redis would
        // refuse the expiry inside the script that settles its batch.
        let mut job = Job::new("echo", json!({}));
        job.result_ttl_s = Some(crate::job::MAX_RESULT_TTL_S + 1);
        assert_eq!(
            ValidJob::from_job(&job).unwrap_err(),
            "job field `result_ttl_s` must be at most 315360000 (ten years)"
        );
    }

    #[test]
    fn explains_what_is_wrong() {
        let cases = [
            ("{not json", "not valid JSON"),
            (r#"{"args":{}}"#, "no `tool` field"),
            (r#"{"tool":"echo","args":[]}"#, "`args` must be an object"),
            (
                r#"{"tool":"echo","args":{},"max_attempts":"3"}"#,
                "`max_attempts`",
            ),
            (
                r#"{"tool":"echo","args":{},"max_attempts":0}"#,
                "at least 1",
            ),
            (r#"{"tool":"","args":{}}"#, "must not be empty"),
            (
                r#"{"tool":"echo","args":{},"meta":1}"#,
                "`meta` must be an object",
            ),
            (
                r#"{"tool":"echo","args":{},"id":""}"#,
                "`id` must not be empty",
            ),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
