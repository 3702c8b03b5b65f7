//! Follow-up jobs: the templates a job carries in `on_success` and
//! `on_failure`, checked when the job is parsed, and turned into the
//! follow-up's payload when the job is settled. The payload is built here,
//! in Rust, and handed whole to the script that settles the parent, which
//! pushes it in the same call: the script stays dumb (no JSON in Lua) and
//! the follow-up exists if and only if the parent's outcome was written.
//!
//! The one substitution: in the template's `args`, a string that is exactly
//! `$prev.id`, `$prev.output`, `$prev.output.<path>`, `$prev.error` or
//! `$prev.error.<path>` becomes that JSON value of the parent (`null` when
//! absent). Nothing else is touched: not a template language.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Job, Options};
use crate::spec::QueueSpec;

/// Follow-ups nested in follow-ups (a chain written out in one job) at
/// most: each link's payload carries the rest of the chain.
pub const MAX_CHAIN: usize = 16;

/// A job to enqueue when its parent is settled: a job without the fields
/// toolq manages (`id`, `attempt`, `recoveries`, `batch`) or that cannot
/// hold for a job nobody enqueued by hand (`unique_key`, `run_at`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    pub tool: String,
    pub args: Value,
    /// The queue it goes to; the parent's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Box<FollowUp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Box<FollowUp>>,
}

impl FollowUp {
    /// A follow-up running `tool` with `args`, in the parent's queue.
    pub fn new(tool: impl Into<String>, args: Value) -> Self {
        FollowUp {
            tool: tool.into(),
            args,
            queue: None,
            max_attempts: None,
            timeout_ms: None,
            result_ttl_s: None,
            meta: None,
            on_success: None,
            on_failure: None,
        }
    }

    /// Sends the follow-up to `queue` instead of the parent's.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// What this follow-up enqueues when it succeeds in turn.
    pub fn on_success(mut self, next: FollowUp) -> Self {
        self.on_success = Some(Box::new(next));
        self
    }

    /// What this follow-up enqueues when it dies in turn.
    pub fn on_failure(mut self, next: FollowUp) -> Self {
        self.on_failure = Some(Box::new(next));
        self
    }

    /// The tools this template and those it carries name, each with where
    /// (`on_success.on_failure`, ...), for checking them against a catalog.
    pub fn tools(&self, at: &str) -> Vec<(String, &str)> {
        let mut out = vec![(at.to_owned(), self.tool.as_str())];
        for (field, next) in [
            ("on_success", &self.on_success),
            ("on_failure", &self.on_failure),
        ] {
            if let Some(next) = next {
                out.extend(next.tools(&format!("{at}.{field}")));
            }
        }
        out
    }

    /// The queues this template and those it carries name (one without a
    /// queue goes to its parent's, which is not named here): the producer
    /// registers them with the parent, since the script that pushes a
    /// follow-up may touch only its parent's queue's keys.
    pub fn queues(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.queue.as_deref().into_iter().collect();
        for next in [&self.on_success, &self.on_failure].into_iter().flatten() {
            out.extend(next.queues());
        }
        out
    }

    /// Reads a template, with what is wrong in words.
    pub fn from_value(v: &Value) -> Result<FollowUp, String> {
        let t: FollowUp = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        t.check(1)?;
        Ok(t)
    }

    /// What the types cannot say, for this template and those it carries.
    pub fn check(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_CHAIN {
            return Err(format!("follow-ups nest deeper than {MAX_CHAIN}"));
        }
        if self.tool.trim().is_empty() {
            return Err("`tool` must not be empty".into());
        }
        if !self.args.is_object() {
            return Err("`args` must be an object".into());
        }
        if let Some(q) = &self.queue {
            match QueueSpec::parse(q) {
                Ok(spec) if spec.name == *q && spec.weight.is_none() => {}
                Ok(_) => return Err(format!("queue name {q:?} must not contain `=`")),
                Err(e) => return Err(e),
            }
        }
        Options {
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            result_ttl_s: self.result_ttl_s,
            meta: self.meta.as_ref(),
        }
        .check()
        .map_err(|e| format!("`{}` must be {}", e.field, e.must_be))?;
        for (field, next) in [
            ("on_success", &self.on_success),
            ("on_failure", &self.on_failure),
        ] {
            if let Some(next) = next {
                next.check(depth + 1)
                    .map_err(|e| format!("`{field}`: {e}"))?;
            }
        }
        Ok(())
    }

    /// The follow-up's payload: `id` set, the parent's values put into
    /// `args`, enqueued `now_ms`. Cannot fail on anything a parent returns.
    pub fn payload(&self, id: String, prev: &Prev<'_>, now_ms: u64) -> String {
        self.job(id, substitute(&self.args, prev), Some(now_ms))
    }

    /// The follow-up as a job with `id` and `args`, serialised.
    fn job(&self, id: String, args: Value, enqueued_at: Option<u64>) -> String {
        let mut job = Job::new(self.tool.clone(), args);
        job.id = Some(id);
        job.max_attempts = self.max_attempts;
        job.timeout_ms = self.timeout_ms;
        job.result_ttl_s = self.result_ttl_s;
        job.meta.clone_from(&self.meta);
        job.enqueued_at = enqueued_at;
        job.on_success.clone_from(&self.on_success);
        job.on_failure.clone_from(&self.on_failure);
        // A `Job` of JSON values and strings always serialises.
        serde_json::to_string(&job).unwrap_or_default()
    }
}

/// Counts a batch callback's args may name, as `"$batch.<name>"`; the
/// settling script puts them in when the batch's last job is settled.
pub const BATCH_COUNTS: [&str; 4] = ["succeeded", "dead", "cancelled", "total"];

impl FollowUp {
    /// A batch callback's payload, cut where the counts go: text, a count's
    /// name, text, ..., text (see `queue/scripts/batch_callback.lua`). Its
    /// id is `<batch>:callback`, and `"$batch.id"` is put in here. It has
    /// no `enqueued_at`: it is enqueued when the batch ends, not now.
    pub fn batch_parts(&self, batch: &str) -> Vec<String> {
        // A marker no template can hold by chance: a fresh UUID, checked.
        let mut marker = uuid::Uuid::new_v4().simple().to_string();
        let text = serde_json::to_string(self).unwrap_or_default();
        while text.contains(&marker) {
            marker = uuid::Uuid::new_v4().simple().to_string();
        }
        let args = mark_counts(&self.args, batch, &marker);
        let payload = self.job(format!("{batch}:callback"), args, None);
        split_marked(&payload, &marker)
    }
}

/// `args` with `"$batch.id"` replaced and each `"$batch.<count>"` turned
/// into `"<marker>:<count>"`.
fn mark_counts(args: &Value, batch: &str, marker: &str) -> Value {
    match args {
        Value::String(s) => match s.strip_prefix("$batch.") {
            Some("id") => Value::String(batch.to_owned()),
            Some(name) if BATCH_COUNTS.contains(&name) => Value::String(format!("{marker}:{name}")),
            _ => args.clone(),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| mark_counts(v, batch, marker))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), mark_counts(v, batch, marker)))
                .collect::<Map<String, Value>>(),
        ),
        _ => args.clone(),
    }
}

/// Cuts `payload` at each `"<marker>:<count>"` (quotes included).
fn split_marked(payload: &str, marker: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = payload;
    let open = format!("\"{marker}:");
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let Some(end) = after.find('"') else { break };
        parts.push(rest[..at].to_owned());
        parts.push(after[..end].to_owned());
        rest = &after[end + 1..];
    }
    parts.push(rest.to_owned());
    parts
}

/// Which outcome a follow-up answers; its id is `<parent id>:<this>`, so a
/// parent settled once enqueues it once, and a re-run parent reuses the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Success,
    Failure,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Success => "on_success",
            Trigger::Failure => "on_failure",
        }
    }

    /// The follow-up's id.
    pub fn id(self, parent: &str) -> String {
        format!("{parent}:{}", self.as_str())
    }
}

/// What a follow-up can see of its parent.
pub struct Prev<'a> {
    pub id: &'a str,
    pub output: Option<&'a Value>,
    /// `{kind, message}` on failure.
    pub error: Option<Value>,
}

/// `args` with each placeholder string replaced by the parent's value.
pub fn substitute(args: &Value, prev: &Prev<'_>) -> Value {
    match args {
        Value::String(s) => match lookup(s, prev) {
            Some(v) => v,
            None => args.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, prev)).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, prev)))
                .collect::<Map<String, Value>>(),
        ),
        _ => args.clone(),
    }
}

/// The value a placeholder names; `None` for any other string. A path
/// walks object fields and array indexes by their dot-separated names.
fn lookup(s: &str, prev: &Prev<'_>) -> Option<Value> {
    let rest = s.strip_prefix("$prev.")?;
    let (root, path) = match rest.split_once('.') {
        Some((root, path)) => (root, Some(path)),
        None => (rest, None),
    };
    let base = match (root, path) {
        ("id", None) => return Some(Value::String(prev.id.to_owned())),
        ("output", _) => prev.output.cloned().unwrap_or(Value::Null),
        ("error", _) => prev.error.clone().unwrap_or(Value::Null),
        _ => return None,
    };
    let Some(path) = path else {
        return Some(base);
    };
    let mut at = &base;
    for step in path.split('.') {
        let next = match at {
            Value::Object(m) => m.get(step),
            Value::Array(a) => step.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return Some(Value::Null),
        }
    }
    Some(at.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prev<'a>(output: Option<&'a Value>, error: Option<Value>) -> Prev<'a> {
        Prev {
            id: "p1",
            output,
            error,
        }
    }

    #[test]
    fn exact_placeholders_become_the_parents_values_and_nothing_else_changes() {
        let out = json!({"value": 14, "rows": [{"n": 1}, {"n": 2}], "s": "$prev.id"});
        let args = json!({
            "id": "$prev.id", "all": "$prev.output", "v": "$prev.output.value",
            "deep": ["$prev.output.rows.1.n"], "missing": "$prev.output.nope.x",
            "err": "$prev.error", "text": "id $prev.id", "other": "$prev.idx",
            "n": 3, "nested": {"keep": "$prev"}
        });
        let got = substitute(&args, &prev(Some(&out), None));
        assert_eq!(
            got,
            json!({
                "id": "p1", "all": out, "v": 14, "deep": [2], "missing": null,
                "err": null, "text": "id $prev.id", "other": "$prev.idx",
                "n": 3, "nested": {"keep": "$prev"}
            })
        );
    }

    #[test]
    fn a_failure_follow_up_sees_the_error() {
        let error = json!({"kind": "permanent", "message": "no"});
        let args = json!({"e": "$prev.error", "k": "$prev.error.kind", "o": "$prev.output"});
        assert_eq!(
            substitute(&args, &prev(None, Some(error.clone()))),
            json!({"e": error, "k": "permanent", "o": null})
        );
    }

    #[test]
    fn the_payload_is_a_job_with_its_own_id_and_the_rest_of_the_chain() {
        let t = FollowUp::new("echo", json!({"x": "$prev.output"}))
            .on_success(FollowUp::new("echo", json!({"y": "$prev.output"})));
        let out = json!(5);
        let p = t.payload(Trigger::Success.id("p1"), &prev(Some(&out), None), 7);
        let job = crate::job::parse(p.as_bytes(), Default::default()).unwrap();
        assert_eq!(job.id.as_deref(), Some("p1:on_success"));
        assert_eq!(job.args, json!({"x": 5}));
        assert_eq!(job.enqueued_at, Some(7));
        // The next link keeps its own placeholders, for its own parent.
        assert_eq!(job.on_success.unwrap().args, json!({"y": "$prev.output"}));
    }

    #[test]
    fn a_batch_callback_is_cut_where_its_counts_go() {
        let t = FollowUp::new(
            "echo",
            json!({"ok": "$batch.succeeded", "dead": ["$batch.dead"], "b": "$batch.id",
                   "all": "$batch.total", "c": "$batch.cancelled", "keep": "$batch.nope"}),
        );
        let parts = t.batch_parts("b1");
        assert_eq!(parts.len(), 9, "four counts between five texts: {parts:?}");
        // What the script does: the counts between the texts.
        let counts = |name: &str| match name {
            "succeeded" => "7",
            "dead" => "2",
            "cancelled" => "1",
            "total" => "10",
            _ => panic!("{name}"),
        };
        let joined: String = parts
            .iter()
            .enumerate()
            .map(|(i, p)| if i % 2 == 1 { counts(p) } else { p.as_str() })
            .collect();
        let job = crate::job::parse(joined.as_bytes(), Default::default()).unwrap();
        assert_eq!(job.id.as_deref(), Some("b1:callback"));
        assert_eq!(
            job.args,
            json!({"ok": 7, "dead": [2], "b": "b1", "all": 10, "c": 1, "keep": "$batch.nope"})
        );
    }

    #[test]
    fn bad_templates_are_refused_with_what_is_wrong() {
        let cases = [
            (json!({"args": {}}), "missing field `tool`"),
            (
                json!({"tool": "echo", "args": []}),
                "`args` must be an object",
            ),
            (json!({"tool": " ", "args": {}}), "`tool` must not be empty"),
            (
                json!({"tool": "echo", "args": {}, "id": "x"}),
                "unknown field `id`",
            ),
            (
                json!({"tool": "echo", "args": {}, "unique_key": "u"}),
                "unknown field `unique_key`",
            ),
            (
                json!({"tool": "echo", "args": {}, "queue": "a b"}),
                "must not contain braces or spaces",
            ),
            (
                json!({"tool": "echo", "args": {}, "max_attempts": 0}),
                "at least 1",
            ),
            (
                json!({"tool": "echo", "args": {}, "on_failure": {"tool": "echo", "args": 1}}),
                "`on_failure`: `args` must be an object",
            ),
            (json!("echo"), "expected struct FollowUp"),
        ];
        for (t, want) in cases {
            let e = FollowUp::from_value(&t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        let mut chain = json!({"tool": "echo", "args": {}});
        for _ in 0..MAX_CHAIN {
            chain = json!({"tool": "echo", "args": {}, "on_success": chain});
        }
        assert!(FollowUp::from_value(&chain)
            .unwrap_err()
            .contains("nest deeper"));
    }
}
