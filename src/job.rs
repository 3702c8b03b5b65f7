//! The job wire format (v1): parsing with precise errors, and the result and
//! dead-entry documents written back. Shared by the worker and the producer;
//! the queue itself only moves opaque payloads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
        }
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
    match serde_json::from_slice::<Job>(payload) {
        Ok(job) if job.args.is_object() => Ok(job),
        Ok(_) => Err(JobError::WrongType {
            field: "args",
            expected: "an object",
        }),
        Err(_) => Err(classify(payload)),
    }
}

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

/// `{kind, message}` as written into results and dead entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

/// Final or latest state of a job, stored at `toolq:{Q}:result:<id>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobResult {
    pub id: String,
    pub tool: String,
    /// `succeeded`, `failed` (an attempt failed; a retry is scheduled) or `dead`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    pub attempts: u32,
    #[serde(default)]
    pub recoveries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<u64>,
    pub started_at: u64,
    pub finished_at: u64,
    pub duration_ms: f64,
    pub worker: String,
    #[serde(default)]
    pub cached: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// The writer's view of [`JobResult`]: the same document, serialised from
/// borrowed fields so the hot path copies nothing it does not have to.
#[derive(Debug, Serialize)]
pub struct ResultRef<'a> {
    pub id: &'a str,
    pub tool: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a ErrorInfo>,
    pub attempts: u32,
    pub recoveries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<u64>,
    pub started_at: u64,
    pub finished_at: u64,
    pub duration_ms: f64,
    pub worker: &'a str,
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a Value>,
}

impl ResultRef<'_> {
    /// The JSON text; a result that cannot be serialised (it always can:
    /// every field is plain data) still yields a valid document.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(e) => format!(
                r#"{{"id":{},"status":"{}","error":{{"kind":"internal","message":{}}}}}"#,
                Value::String(self.id.to_owned()),
                self.status,
                Value::String(format!("result not serialisable: {e}"))
            ),
        }
    }
}

impl JobResult {
    /// True once nothing more will happen to the job.
    pub fn is_final(&self) -> bool {
        self.status != "failed"
    }
}

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

    #[test]
    fn the_writer_and_reader_views_of_a_result_agree() {
        let output = json!({"x": 1});
        let error = ErrorInfo {
            kind: "k".into(),
            message: "m".into(),
        };
        let meta = json!({"m": true});
        let doc = ResultRef {
            id: "i",
            tool: "t",
            status: "succeeded",
            output: Some(&output),
            error: Some(&error),
            attempts: 2,
            recoveries: 1,
            enqueued_at: Some(5),
            started_at: 6,
            finished_at: 7,
            duration_ms: 1.5,
            worker: "w",
            cached: true,
            meta: Some(&meta),
        };
        let back: JobResult = serde_json::from_str(&doc.to_json()).unwrap();
        assert_eq!(back.id, "i");
        assert_eq!(back.output, Some(output));
        assert_eq!(back.error, Some(error));
        assert_eq!(
            (back.attempts, back.recoveries, back.enqueued_at),
            (2, 1, Some(5))
        );
        assert_eq!(
            (back.started_at, back.finished_at, back.duration_ms),
            (6, 7, 1.5)
        );
        assert_eq!(
            (back.worker.as_str(), back.cached, back.meta),
            ("w", true, Some(meta))
        );
    }

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
