//! The result document written back for each attempt: the reader's
//! [`JobResult`], the writer's borrowed [`ResultRef`], and [`expand`], which
//! turns the stored form back into the whole document.
//!
//! A stored result leaves out what its reader can rebuild exactly, because
//! a result's Redis memory is paid for its whole TTL (1 h by default): the
//! `id` (the key names it), `finished_at` (`started_at` plus the whole
//! milliseconds of `duration_ms`, the same clock readings), and
//! `recoveries` and `cached` at their defaults (0, false). Every reader of a
//! result goes through [`expand`], so what users see is unchanged; a result
//! stored whole (by an earlier version, by recovery or a cancel) comes out
//! as it was.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// `{kind, message}` as written into results and dead entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorInfo {
    pub kind: String,
    pub message: String,
}

/// Final or latest state of a job, stored at `toolq:{Q}:result:<id>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobResult {
    pub id: String,
    pub tool: String,
    /// `succeeded`, `retrying` (an attempt failed; another is scheduled) or
    /// `dead`: the one status vocabulary of results, stats, CLI and metrics.
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

/// The writer's view of [`JobResult`]: its stored form (see the module
/// doc), serialised from borrowed fields so the hot path copies nothing it
/// does not have to.
#[derive(Debug, Serialize)]
pub struct ResultRef<'a> {
    /// Not stored: the result's key names it.
    #[serde(skip)]
    pub id: &'a str,
    pub tool: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a ErrorInfo>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub recoveries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<u64>,
    pub started_at: u64,
    /// How long the attempt ran; `finished_at` is `started_at` plus its
    /// whole milliseconds, so it is not stored.
    #[serde(rename = "duration_ms", serialize_with = "as_ms")]
    pub elapsed: std::time::Duration,
    pub worker: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Milliseconds with nanosecond digits and no float noise (`0.047281`, not
/// `0.047281000000000004`): the shortest text that reads back as the same
/// number, whose whole part is the duration's whole milliseconds.
fn as_ms<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_nanos() as f64 / 1e6)
}

impl ResultRef<'_> {
    /// The JSON text; a result that cannot be serialised (it always can:
    /// every field is plain data) still yields a valid document.
    pub fn to_json(&self) -> String {
        // A small output's result is about 300 bytes: room for it at once,
        // not a regrowth (copy) per job.
        let mut out = Vec::with_capacity(384);
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

/// The whole result document of job `id` from its stored text: the fields
/// the writer left out (see the module doc) put back, in the document's
/// order. Output and meta are copied as they were stored, byte for byte.
/// Text that is not a result object comes back unchanged.
pub fn expand(id: &str, stored: &str) -> String {
    let Ok(doc) = serde_json::from_str::<Stored<'_>>(stored) else {
        return stored.to_owned();
    };
    if doc.id.is_some()
        && doc.finished_at.is_some()
        && doc.recoveries.is_some()
        && doc.cached.is_some()
    {
        return stored.to_owned();
    }
    let id_text = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
    let finished = doc.finished_at.is_none().then(|| {
        let started = doc.started_at.and_then(|s| s.get().parse::<u64>().ok());
        let ms = doc.duration_ms.and_then(|d| d.get().parse::<f64>().ok());
        // Whole milliseconds, as the writer counted them.
        (started.unwrap_or(0) + ms.unwrap_or(0.0).max(0.0).floor() as u64).to_string()
    });
    let raw = |t: &str| RawValue::from_string(t.to_owned()).ok();
    let id_raw = raw(&id_text);
    let finished_raw = finished.as_deref().and_then(raw);
    let (zero, no) = (raw("0"), raw("false"));
    let whole = Stored {
        id: doc.id.or(id_raw.as_deref()),
        finished_at: doc.finished_at.or(finished_raw.as_deref()),
        recoveries: doc.recoveries.or(zero.as_deref()),
        cached: doc.cached.or(no.as_deref()),
        ..doc
    };
    serde_json::to_string(&whole).unwrap_or_else(|_| stored.to_owned())
}

/// A result document as stored, each field's JSON text as it is, in the
/// whole document's order (fields outside it are not kept: toolq never
/// writes any).
#[derive(Deserialize, Serialize)]
struct Stored<'a> {
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    id: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    tool: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    status: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    output: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    error: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    attempts: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    recoveries: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    enqueued_at: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    started_at: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    finished_at: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    duration_ms: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    worker: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    cached: Option<&'a RawValue>,
    #[serde(
        borrow,
        default,
        deserialize_with = "raw",
        skip_serializing_if = "Option::is_none"
    )]
    meta: Option<&'a RawValue>,
}

/// A present field's text, `null` included (an `Option` alone would read a
/// `null` as absent and drop it).
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl JobResult {
    /// Reads job `id`'s stored result text (see [`expand`]).
    pub fn from_stored(id: &str, stored: &str) -> serde_json::Result<JobResult> {
        serde_json::from_str(&expand(id, stored))
    }

    /// True once nothing more will happen to the job.
    pub fn is_final(&self) -> bool {
        self.status != "retrying"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn doc<'a>(output: &'a Value, error: &'a ErrorInfo, meta: &'a Value) -> ResultRef<'a> {
        ResultRef {
            id: "i\"d",
            tool: "t",
            status: "succeeded",
            output: Some(output),
            error: Some(error),
            attempts: 2,
            recoveries: 1,
            enqueued_at: Some(5),
            started_at: 6,
            elapsed: Duration::from_nanos(1_500_001),
            worker: "w",
            cached: true,
            meta: Some(meta),
        }
    }

    #[test]
    fn the_writer_and_reader_views_of_a_result_agree() {
        let output = json!({"x": 1, "big": 12345678901234567890u64});
        let error = ErrorInfo {
            kind: "k".into(),
            message: "m".into(),
        };
        let meta = json!({"m": true});
        let back = JobResult::from_stored("i\"d", &doc(&output, &error, &meta).to_json()).unwrap();
        assert_eq!(back.id, "i\"d");
        assert_eq!(back.output, Some(output));
        assert_eq!(back.error, Some(error));
        assert_eq!(
            (back.attempts, back.recoveries, back.enqueued_at),
            (2, 1, Some(5))
        );
        assert_eq!(
            (back.started_at, back.finished_at, back.duration_ms),
            (6, 7, 1.500001)
        );
        assert_eq!(
            (back.worker.as_str(), back.cached, back.meta),
            ("w", true, Some(meta))
        );
    }

    /// The stored form leaves out only what `expand` rebuilds: the whole
    /// document comes back in the order an earlier version stored it, and
    /// such a document reads back unchanged.
    #[test]
    fn a_stored_result_expands_to_the_whole_document() {
        let (output, meta) = (json!({"i": 7, "n": null}), json!({"a": [1, 2]}));
        let error = ErrorInfo {
            kind: "k".into(),
            message: "m".into(),
        };
        let mut d = doc(&output, &error, &meta);
        d.error = None;
        (d.recoveries, d.cached) = (0, false);
        let stored = d.to_json();
        assert_eq!(
            stored,
            r#"{"tool":"t","status":"succeeded","output":{"i":7,"n":null},"attempts":2,"enqueued_at":5,"started_at":6,"duration_ms":1.500001,"worker":"w","meta":{"a":[1,2]}}"#
        );
        let whole = r#"{"id":"i\"d","tool":"t","status":"succeeded","output":{"i":7,"n":null},"attempts":2,"recoveries":0,"enqueued_at":5,"started_at":6,"finished_at":7,"duration_ms":1.500001,"worker":"w","cached":false,"meta":{"a":[1,2]}}"#;
        assert_eq!(expand("i\"d", &stored), whole);
        assert_eq!(expand("other", whole), whole, "a whole document is kept");
        // A null output is kept as written, not dropped as absent.
        let null = r#"{"tool":"t","status":"succeeded","output":null,"attempts":1,"started_at":9,"duration_ms":0.999999,"worker":"w"}"#;
        assert_eq!(
            expand("j", null),
            r#"{"id":"j","tool":"t","status":"succeeded","output":null,"attempts":1,"recoveries":0,"started_at":9,"finished_at":9,"duration_ms":0.999999,"worker":"w","cached":false}"#
        );
        assert_eq!(expand("j", "not json"), "not json");
    }

    /// `finished_at` is rebuilt from the whole milliseconds of the stored
    /// duration: the same number the writer would have stored.
    #[test]
    fn the_rebuilt_finish_is_the_whole_milliseconds_of_the_duration() {
        let (output, meta, error) = (
            json!(1),
            json!(null),
            ErrorInfo {
                kind: "k".into(),
                message: "m".into(),
            },
        );
        for nanos in [
            0,
            1,
            999_999,
            1_000_000,
            2_999_999,
            3_000_000,
            86_400_000_123_456u64,
        ] {
            let mut d = doc(&output, &error, &meta);
            d.elapsed = Duration::from_nanos(nanos);
            let back = JobResult::from_stored("x", &d.to_json()).unwrap();
            assert_eq!(back.finished_at, 6 + nanos / 1_000_000, "{nanos} ns");
        }
    }
}
