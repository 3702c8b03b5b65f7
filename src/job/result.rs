//! The result document written back for each attempt: the reader's
//! [`JobResult`] and the writer's borrowed [`ResultRef`].

use serde::{Deserialize, Serialize};
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

impl JobResult {
    /// True once nothing more will happen to the job.
    pub fn is_final(&self) -> bool {
        self.status != "retrying"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
