//! The job wire format (v1): parsing with precise errors (here), the result
//! and dead-entry documents written back (`result`, `dead`), and the payload
//! rewrite for the next attempt (`rewrite`), the follow-ups a job carries
//! (`followup`) and the progress a running job reports (`progress`).
//! Shared by the worker and the
//! producer; the queue itself only moves opaque payloads.

mod dead;
mod followup;
mod head;
mod options;
mod progress;
mod result;
mod rewrite;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use dead::{dead_entry_prefix, DeadJob, Truncated};
pub use followup::{substitute, FollowUp, Prev, Trigger, MAX_CHAIN};
pub use head::{read_head, read_tail, Head};
pub use options::{Options, OutOfRange};
pub use progress::Progress;
pub use result::{expand as expand_result, ErrorInfo, JobResult, ResultRef};
pub use rewrite::{recoveries_of, rewrite_payload};

/// Default payload limit: larger payloads are buried unread.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default JSON nesting limit, checked before parsing.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// One job as it travels through Redis. Unknown fields are ignored here but
/// kept in the payload (retries rewrite the original object, not this struct).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Job {
    /// Times a worker died holding this job; managed by toolq, never by a
    /// failure of the job itself, so it does not spend retries.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recoveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub tool: String,
    pub args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<u64>,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Set by `toolq submit --wait`: the worker reports completion to this
    /// batch's notification list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Enqueued, in the same script call, when this job succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Box<FollowUp>>,
    /// Enqueued, in the same script call, when this job goes to the dead
    /// set after running (README "Follow-up jobs" lists which ends count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Box<FollowUp>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Job {
    /// A job for `tool` with `args` and nothing else set.
    pub fn new(tool: impl Into<String>, args: Value) -> Self {
        Job {
            recoveries: 0,
            id: None,
            tool: tool.into(),
            args,
            max_attempts: None,
            timeout_ms: None,
            run_at: None,
            enqueued_at: None,
            attempt: 0,
            result_ttl_s: None,
            meta: None,
            batch: None,
            unique_key: None,
            on_success: None,
            on_failure: None,
        }
    }

    /// The options it shares with follow-ups and schedules.
    pub fn options(&self) -> Options<'_> {
        Options {
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            result_ttl_s: self.result_ttl_s,
            meta: self.meta.as_ref(),
        }
    }

    /// Enqueues `next` when this job succeeds.
    pub fn on_success(mut self, next: FollowUp) -> Self {
        self.on_success = Some(Box::new(next));
        self
    }

    /// Enqueues `next` when this job dies.
    pub fn on_failure(mut self, next: FollowUp) -> Self {
        self.on_failure = Some(Box::new(next));
        self
    }

    /// The queues its follow-ups (and theirs) name; see [`FollowUp::queues`].
    pub fn follow_up_queues(&self) -> Vec<&str> {
        [&self.on_success, &self.on_failure]
            .into_iter()
            .flatten()
            .flat_map(|t| t.queues())
            .collect()
    }
}

/// Why a payload is not a valid job. Each becomes the `kind` of its dead entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("payload is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("payload nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("job has no `{0}` field")]
    MissingField(&'static str),
    #[error("job field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// `on_success` or `on_failure` is not a valid follow-up template.
    #[error("job field `{field}` is not a valid follow-up: {message}")]
    InvalidFollowUp {
        field: &'static str,
        message: String,
    },
}

impl JobError {
    pub fn kind(&self) -> &'static str {
        match self {
            JobError::TooLarge { .. } => "too_large",
            JobError::TooDeep { .. } => "too_deep",
            JobError::InvalidJson(_) => "invalid_json",
            JobError::NotAnObject => "not_an_object",
            JobError::MissingField(_) => "missing_field",
            JobError::WrongType { .. } => "wrong_type",
            JobError::InvalidFollowUp { .. } => "invalid_follow_up",
        }
    }
}

/// Limits applied before a payload is parsed.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_depth: DEFAULT_MAX_JSON_DEPTH,
        }
    }
}

/// Parses a payload, checking size and nesting first so a hostile payload
/// costs one linear scan, never a deep recursion.
pub fn parse(payload: &[u8], limits: ParseLimits) -> Result<Job, JobError> {
    if payload.len() > limits.max_bytes {
        return Err(JobError::TooLarge {
            size: payload.len(),
            limit: limits.max_bytes,
        });
    }
    if nesting_depth(payload) > limits.max_depth {
        return Err(JobError::TooDeep {
            limit: limits.max_depth,
        });
    }
    let job = match serde_json::from_slice::<Job>(payload) {
        Ok(job) => job,
        Err(_) => match with_recoveries_of_its_own(payload) {
            Some(job) => job,
            None => return Err(classify(payload)),
        },
    };
    if !job.args.is_object() {
        return Err(wrong("args", "an object"));
    }
    // The wire format bounds these (`max_attempts` ≥ 1, `meta` an object,
    // ...); the typed parse alone would take 0 and any JSON value.
    job.options()
        .check()
        .map_err(|e| wrong(e.field, e.must_be))?;
    check_follow_ups(&job)?;
    Ok(job)
}

/// The follow-up templates' values (their types were checked by the parse).
fn check_follow_ups(job: &Job) -> Result<(), JobError> {
    for (field, t) in [
        ("on_success", &job.on_success),
        ("on_failure", &job.on_failure),
    ] {
        if let Some(t) = t {
            t.check(1)
                .map_err(|message| JobError::InvalidFollowUp { field, message })?;
        }
    }
    Ok(())
}

/// A payload that led with toolq's recovery count and also carried a
/// `recoveries` field of its own further in (recovery prepends the count
/// textually, without a JSON parser): the two add up. Only tried when the
/// plain parse failed, so the common case costs nothing.
fn with_recoveries_of_its_own(payload: &[u8]) -> Option<Job> {
    let rest = payload.strip_prefix(b"{\"recoveries\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let leading: u32 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let after = rest[digits..].strip_prefix(b",")?;
    let mut body = Vec::with_capacity(after.len() + 1);
    body.push(b'{');
    body.extend_from_slice(after);
    let mut job: Job = serde_json::from_slice(&body).ok()?;
    job.recoveries = job.recoveries.saturating_add(leading);
    Some(job)
}

/// The longest result lifetime a job may ask for. Redis refuses an expiry
/// past its clock's range with an error, and that error would come from
/// inside the script that settles a whole batch of jobs.
pub const MAX_RESULT_TTL_S: u64 = 10 * 365 * 86_400;

/// Explains a payload that failed the typed parse, field by field.
fn classify(payload: &[u8]) -> JobError {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return JobError::InvalidJson(e.to_string()),
    };
    let Some(obj) = value.as_object() else {
        return JobError::NotAnObject;
    };
    check_fields(obj).err().unwrap_or_else(|| {
        // Typed parse failed but every field looks right: duplicate fields.
        JobError::InvalidJson("duplicate or conflicting fields".into())
    })
}

fn check_fields(obj: &Map<String, Value>) -> Result<(), JobError> {
    match obj.get("tool") {
        None => return Err(JobError::MissingField("tool")),
        Some(Value::String(_)) => {}
        Some(_) => return Err(wrong("tool", "a string")),
    }
    match obj.get("args") {
        None => return Err(JobError::MissingField("args")),
        Some(Value::Object(_)) => {}
        Some(_) => return Err(wrong("args", "an object")),
    }
    for field in ["id", "batch", "unique_key"] {
        if let Some(v) = obj.get(field) {
            if !v.is_string() {
                return Err(wrong(static_name(field), "a string"));
            }
        }
    }
    for field in [
        "max_attempts",
        "timeout_ms",
        "run_at",
        "enqueued_at",
        "attempt",
        "result_ttl_s",
        "recoveries",
    ] {
        if let Some(v) = obj.get(field) {
            let fits = v.as_u64().is_some_and(|n| {
                !matches!(field, "max_attempts" | "attempt" | "recoveries") || n <= u32::MAX as u64
            });
            if !fits {
                return Err(wrong(static_name(field), "a non-negative integer"));
            }
        }
    }
    if let Some(v) = obj.get("meta") {
        if !v.is_object() && !v.is_null() {
            return Err(wrong("meta", "an object"));
        }
    }
    for field in ["on_success", "on_failure"] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
            FollowUp::from_value(v).map_err(|message| JobError::InvalidFollowUp {
                field: if field == "on_success" {
                    "on_success"
                } else {
                    "on_failure"
                },
                message,
            })?;
        }
    }
    Ok(())
}

fn wrong(field: &'static str, expected: &'static str) -> JobError {
    JobError::WrongType { field, expected }
}

fn static_name(field: &str) -> &'static str {
    const NAMES: [&str; 10] = [
        "id",
        "batch",
        "unique_key",
        "max_attempts",
        "timeout_ms",
        "run_at",
        "enqueued_at",
        "attempt",
        "result_ttl_s",
        "recoveries",
    ];
    NAMES.iter().find(|n| **n == field).copied().unwrap_or("?")
}

/// Deepest nesting of arrays and objects, ignoring brackets inside strings.
pub fn nesting_depth(payload: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in payload {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Milliseconds since the Unix epoch by this machine's clock (used for
/// reporting only; due times are judged by Redis's clock).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Result<Job, JobError> {
        parse(s.as_bytes(), ParseLimits::default())
    }

    #[test]
    fn parses_the_design_example() {
        let job = p(r#"{"tool":"calculator","args":{"expression":"2*(3+4)"}}"#).unwrap();
        assert_eq!(job.tool, "calculator");
        assert_eq!(job.args, json!({"expression": "2*(3+4)"}));
        assert_eq!(job.attempt, 0);
        assert_eq!(job.id, None);
    }

    #[test]
    fn keeps_optional_fields_and_ignores_unknown_ones() {
        let job = p(
            r#"{"tool":"echo","args":{},"id":"x","max_attempts":4,"timeout_ms":50,
            "run_at":5,"enqueued_at":6,"attempt":2,"result_ttl_s":0,"meta":{"a":1},"extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(job.id.as_deref(), Some("x"));
        assert_eq!(job.max_attempts, Some(4));
        assert_eq!(job.timeout_ms, Some(50));
        assert_eq!(job.run_at, Some(5));
        assert_eq!(job.enqueued_at, Some(6));
        assert_eq!(job.attempt, 2);
        assert_eq!(job.result_ttl_s, Some(0));
        assert_eq!(job.meta, Some(json!({"a": 1})));
    }

    #[test]
    fn explains_each_kind_of_bad_payload() {
        let cases: &[(&str, &str)] = &[
            ("not json", "invalid_json"),
            ("{\"tool\":", "invalid_json"),
            ("[1,2]", "not_an_object"),
            ("\"str\"", "not_an_object"),
            (r#"{"args":{}}"#, "missing_field"),
            (r#"{"tool":"echo"}"#, "missing_field"),
            (r#"{"tool":5,"args":{}}"#, "wrong_type"),
            (r#"{"tool":"echo","args":[1]}"#, "wrong_type"),
            (
                r#"{"tool":"echo","args":{},"max_attempts":"3"}"#,
                "wrong_type",
            ),
            (r#"{"tool":"echo","args":{},"attempt":-1}"#, "wrong_type"),
            (r#"{"tool":"echo","args":{},"id":7}"#, "wrong_type"),
            (
                r#"{"tool":"echo","args":{},"max_attempts":0}"#,
                "wrong_type",
            ),
            (r#"{"tool":"echo","args":{},"meta":"m"}"#, "wrong_type"),
            (r#"{"tool":"echo","args":{},"meta":[1]}"#, "wrong_type"),
            (r#"{"tool":"echo","args":{},"timeout_ms":0}"#, "wrong_type"),
        ];
        for (payload, kind) in cases {
            let err = p(payload).unwrap_err();
            assert_eq!(err.kind(), *kind, "{payload}: {err}");
        }
        let err = p(r#"{"tool":"echo","args":{},"max_attempts":"3"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "job field `max_attempts` must be a non-negative integer"
        );
        assert_eq!(
            p(r#"{"args":{}}"#).unwrap_err().to_string(),
            "job has no `tool` field"
        );
        assert_eq!(
            p(r#"{"tool":"echo","args":{},"max_attempts":0}"#)
                .unwrap_err()
                .to_string(),
            "job field `max_attempts` must be at least 1"
        );
        assert_eq!(
            p(r#"{"tool":"echo","args":{},"meta":"m"}"#)
                .unwrap_err()
                .to_string(),
            "job field `meta` must be an object"
        );
        assert_eq!(
            p(r#"{"tool":"echo","args":{},"meta":null}"#).unwrap().meta,
            None
        );
        // Redis would refuse the expiry from inside the ack script.
        let ttl = |t: u64| {
            p(&format!(
                r#"{{"tool":"echo","args":{{}},"result_ttl_s":{t}}}"#
            ))
        };
        assert_eq!(
            ttl(MAX_RESULT_TTL_S).unwrap().result_ttl_s,
            Some(MAX_RESULT_TTL_S)
        );
        assert_eq!(
            ttl(100_000_000_000_000_000).unwrap_err().to_string(),
            "job field `result_ttl_s` must be at most 315360000 (ten years)"
        );
    }

    #[test]
    fn a_recovery_count_prepended_to_a_payload_with_its_own_adds_up() {
        // What recovery makes of `{"tool":..,"recoveries":2}` after a crash.
        let job = p(r#"{"recoveries":1,"tool":"sleep","args":{"ms":1},"id":"r1","recoveries":2}"#)
            .unwrap();
        assert_eq!((job.recoveries, job.id.as_deref()), (3, Some("r1")));
        let rewritten = rewrite_payload(
            br#"{"recoveries":1,"tool":"sleep","args":{},"recoveries":0}"#,
            "r1",
            0,
            1,
        )
        .unwrap();
        assert_eq!(rewritten.matches("recoveries").count(), 1, "{rewritten}");
        assert_eq!(p(&rewritten).unwrap().recoveries, 1);
        // Two fields both of the producer's own are still refused.
        assert_eq!(
            p(r#"{"tool":"echo","args":{},"id":"a","id":"b"}"#)
                .unwrap_err()
                .kind(),
            "invalid_json"
        );
    }

    #[test]
    fn a_bad_follow_up_makes_the_job_invalid_with_what_is_wrong() {
        let e = p(r#"{"tool":"echo","args":{},"on_success":{"tool":"echo","args":{},"id":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.kind(), "invalid_follow_up");
        assert!(
            e.to_string().contains("`on_success`") && e.to_string().contains("`id`"),
            "{e}"
        );
        let e = p(
            r#"{"tool":"echo","args":{},"on_failure":{"tool":"echo","args":{},"max_attempts":0}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "job field `on_failure` is not a valid follow-up: `max_attempts` must be at least 1"
        );
        let job = p(r#"{"tool":"echo","args":{},"on_success":{"tool":"echo","args":{"x":"$prev.output"},"queue":"q2"}}"#)
            .unwrap();
        assert_eq!(job.on_success.unwrap().queue.as_deref(), Some("q2"));
    }

    #[test]
    fn size_and_depth_limits_apply_before_parsing() {
        let limits = ParseLimits {
            max_bytes: 100,
            max_depth: 3,
        };
        let big = format!(r#"{{"tool":"echo","args":{{"s":"{}"}}}}"#, "x".repeat(200));
        assert_eq!(
            parse(big.as_bytes(), limits).unwrap_err().kind(),
            "too_large"
        );
        let deep = r#"{"tool":"echo","args":{"a":[[[1]]]}}"#;
        assert_eq!(
            parse(deep.as_bytes(), limits).unwrap_err().kind(),
            "too_deep"
        );
        let hostile = "[".repeat(1_000_000);
        let err = parse(
            hostile.as_bytes(),
            ParseLimits {
                max_bytes: 2 << 20,
                max_depth: 64,
            },
        );
        assert_eq!(err.unwrap_err().kind(), "too_deep");
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(nesting_depth(br#"{"a":"[[[{{\"]]"}"#), 1);
        assert_eq!(nesting_depth(br#"{"a":[{"b":[]}]}"#), 4);
    }
}
