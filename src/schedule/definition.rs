//! A schedule's definition, as the configuration (`[[schedules]]`), the CLI
//! and Redis hold it: one shape and one set of checks for all three, so a
//! definition Redis holds was checked before it got there.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::timetable::Timetable;
use super::{Result, ScheduleError};

/// How late a tick may be enqueued and still count as on time: a worker
/// busy or restarting for a moment catches up; past it, the misfire policy
/// decides. Ten seconds covers a fleet's restarts, not an outage.
pub const DEFAULT_MISFIRE_GRACE_S: u64 = 10;
/// Longest name: it is part of Redis keys and of every tick's job id.
const MAX_NAME_CHARS: usize = 100;

/// What happens to ticks that no worker enqueued within the grace (all
/// workers down, Redis down): none of them runs (`skip`), or one does
/// (`run_once`), for the latest; the schedule then goes on from the next
/// tick after now. Never a storm of catch-up jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    #[default]
    Skip,
    #[value(name = "run_once")]
    RunOnce,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
        }
    }
}

/// One periodic schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Unique across queues; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// Five fields (minute granularity) or six, seconds first.
    pub cron: String,
    /// IANA time zone the cron expression is read in.
    #[serde(default = "utc")]
    pub tz: String,
    pub tool: String,
    #[serde(default = "empty_object")]
    pub args: Value,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub misfire: Misfire,
    /// Seconds a tick may be late and still be enqueued.
    #[serde(default = "default_grace")]
    pub misfire_grace_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_s: Option<u64>,
    /// Copied into every tick's `meta`, beside `schedule` and `tick` (which
    /// win over keys of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

fn utc() -> String {
    "UTC".into()
}
fn empty_object() -> Value {
    Value::Object(Map::new())
}
fn default_queue() -> String {
    crate::config::DEFAULT_QUEUE.into()
}
fn default_grace() -> u64 {
    DEFAULT_MISFIRE_GRACE_S
}

impl Definition {
    /// A definition with the defaults for everything but what names it.
    pub fn new(name: &str, cron: &str, tool: &str, args: Value) -> Self {
        Definition {
            name: name.into(),
            cron: cron.into(),
            tz: utc(),
            tool: tool.into(),
            args,
            queue: default_queue(),
            misfire: Misfire::Skip,
            misfire_grace_s: DEFAULT_MISFIRE_GRACE_S,
            max_attempts: None,
            timeout_ms: None,
            result_ttl_s: None,
            meta: None,
        }
    }

    /// Checks every field; the timetable is what the cron and the time zone
    /// make together, which is also how they are checked.
    pub fn validate(&self) -> Result<Timetable> {
        let invalid = |message: String| ScheduleError::Invalid {
            name: self.name.clone(),
            message,
        };
        check_name(&self.name).map_err(&invalid)?;
        let queue = crate::spec::QueueSpec::parse(&self.queue).map_err(&invalid)?;
        if queue.weight.is_some() || queue.name != self.queue {
            return Err(invalid(format!(
                "queue {:?}: a plain queue name, without a weight",
                self.queue
            )));
        }
        if self.tool.trim().is_empty() {
            return Err(invalid("the tool is empty".into()));
        }
        if !self.args.is_object() {
            return Err(invalid(format!(
                "args must be a JSON object, not {}",
                kind(&self.args)
            )));
        }
        crate::job::Options {
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            result_ttl_s: self.result_ttl_s,
            meta: self.meta.as_ref(),
        }
        .check()
        .map_err(|e| invalid(format!("{} must be {}", e.field, e.must_be)))?;
        if self.misfire_grace_s == 0 {
            return Err(invalid(
                "misfire_grace_s must be at least 1 (ticks are whole seconds)".into(),
            ));
        }
        Timetable::new(&self.name, &self.cron, &self.tz)
    }

    /// The job of the tick at `tick` (unix s), enqueued at `now_ms`: its id
    /// is `schedule:<name>:<tick>`, so a tick is one job whoever enqueues it.
    /// Its `meta` names the schedule and the tick, and says `"misfire":
    /// "run_once"` for the one job run for ticks that passed unenqueued.
    pub fn job(&self, tick: i64, now_ms: u64, misfired: bool) -> (String, String) {
        let id = format!("schedule:{}:{tick}", self.name);
        let mut job = Map::new();
        job.insert("id".into(), Value::from(id.clone()));
        job.insert("tool".into(), Value::from(self.tool.clone()));
        job.insert("args".into(), self.args.clone());
        job.insert("enqueued_at".into(), Value::from(now_ms));
        if let Some(n) = self.max_attempts {
            job.insert("max_attempts".into(), Value::from(n));
        }
        if let Some(ms) = self.timeout_ms {
            job.insert("timeout_ms".into(), Value::from(ms));
        }
        if let Some(s) = self.result_ttl_s {
            job.insert("result_ttl_s".into(), Value::from(s));
        }
        let mut meta = match &self.meta {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        meta.insert("schedule".into(), Value::from(self.name.clone()));
        meta.insert("tick".into(), Value::from(tick));
        if misfired {
            meta.insert("misfire".into(), Value::from(self.misfire.as_str()));
        }
        job.insert("meta".into(), Value::Object(meta));
        (id, Value::Object(job).to_string())
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(ok) {
        return Err(format!(
            "the name must be 1 to {MAX_NAME_CHARS} letters, digits, `.`, `_` or `-` \
             (it is part of Redis keys and of job ids)"
        ));
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_definition_passes_and_bad_fields_are_named() {
        let d = Definition::new("nightly", "0 0 3 * * *", "echo", json!({}));
        assert!(d.validate().is_ok());
        let bad = |f: fn(&mut Definition)| {
            let mut d = d.clone();
            f(&mut d);
            d.validate().unwrap_err().to_string()
        };
        assert!(bad(|d| d.name = "a:b".into()).contains("the name must be"));
        assert!(bad(|d| d.cron = "61 * * * *".into()).contains("invalid cron expression"));
        assert!(bad(|d| d.tz = "Mars/Olympus".into()).contains("unknown time zone"));
        assert!(bad(|d| d.args = json!([1])).contains("args must be a JSON object"));
        assert!(bad(|d| d.queue = "q=2".into()).contains("without a weight"));
        assert!(bad(|d| d.max_attempts = Some(0)).contains("max_attempts"));
        // The same bounds as a job's: a template never makes a job the
        // worker would refuse.
        assert!(bad(|d| d.timeout_ms = Some(0)).contains("timeout_ms must be at least 1"));
        assert!(bad(|d| d.meta = Some(json!("m"))).contains("meta must be an object"));
    }

    #[test]
    fn the_tick_job_has_the_documented_id_and_the_template() {
        let mut d = Definition::new(
            "n",
            "* * * * * *",
            "calculator",
            json!({"expression": "1+1"}),
        );
        d.max_attempts = Some(2);
        let (id, payload) = d.job(1_800_000_000, 5, false);
        assert_eq!(id, "schedule:n:1800000000");
        let v: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["id"], "schedule:n:1800000000");
        assert_eq!(v["tool"], "calculator");
        assert_eq!(v["args"]["expression"], "1+1");
        assert_eq!(v["max_attempts"], 2);
        assert_eq!(v["meta"]["tick"], 1_800_000_000);
        assert!(v.get("timeout_ms").is_none());
        d.meta = Some(json!({"team": "ops", "tick": "theirs"}));
        let (_, payload) = d.job(1_800_000_000, 5, true);
        let v: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["meta"]["team"], "ops");
        assert_eq!(v["meta"]["tick"], 1_800_000_000, "the tick wins");
        assert_eq!(v["meta"]["schedule"], "n");
        assert_eq!(v["meta"]["misfire"], "skip");
    }
}
