//! Metric handles per queue and tool, registered once and reused: the
//! `metrics` macros allocate label strings and hash them on every call,
//! which at a hundred thousand jobs a second is real work.
//!
//! Only registered tools (plus the fixed labels for invalid payloads and
//! unknown tools) get series, so a hostile payload cannot blow up the
//! metric cardinality.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::health::metrics as m;

/// Tool label for jobs naming a tool that is not registered: counted with
/// the invalid payloads, since a producer could otherwise mint new series
/// without bound.
pub const UNKNOWN_TOOL_LABEL: &str = super::executor::INVALID_TOOL_LABEL;

/// The series of one (queue, tool) pair.
pub struct ToolMetrics {
    pub wait: Histogram,
    pub duration: Histogram,
    pub succeeded: Counter,
    pub retried: Counter,
    pub dead: Counter,
    pub cancelled: Counter,
    pub retries: Counter,
    pub dead_total: Counter,
}

impl ToolMetrics {
    fn new(queue: &str, tool: &str) -> Self {
        let (q, t) = (queue.to_owned(), tool.to_owned());
        let finished = |outcome: &'static str| counter!(m::JOBS_FINISHED, "queue" => q.clone(), "tool" => t.clone(), "outcome" => outcome);
        ToolMetrics {
            wait: histogram!(m::JOB_WAIT, "queue" => q.clone(), "tool" => t.clone()),
            duration: histogram!(m::JOB_DURATION, "queue" => q.clone(), "tool" => t.clone()),
            succeeded: finished("succeeded"),
            retried: finished("retrying"),
            dead: finished("dead"),
            cancelled: finished("cancelled"),
            retries: counter!(m::JOB_RETRIES, "queue" => q.clone(), "tool" => t.clone()),
            dead_total: counter!(m::JOBS_DEAD, "queue" => q.clone(), "tool" => t.clone()),
        }
    }
}

/// Handles for every queue a worker serves.
pub struct JobMetrics {
    queues: Vec<String>,
    tools: Vec<RwLock<HashMap<String, Arc<ToolMetrics>>>>,
    pub in_flight: Vec<Gauge>,
}

impl JobMetrics {
    pub fn new(queues: &[String]) -> Self {
        JobMetrics {
            queues: queues.to_vec(),
            tools: queues.iter().map(|_| RwLock::new(HashMap::new())).collect(),
            in_flight: queues
                .iter()
                .map(|q| gauge!(m::JOBS_IN_FLIGHT, "queue" => q.clone()))
                .collect(),
        }
    }

    /// The handles of `tool` on queue `qi`, created on first use.
    pub fn tool(&self, qi: usize, tool: &str) -> Arc<ToolMetrics> {
        if let Some(t) = self.tools[qi]
            .read()
            .ok()
            .and_then(|map| map.get(tool).cloned())
        {
            return t;
        }
        let created = Arc::new(ToolMetrics::new(&self.queues[qi], tool));
        match self.tools[qi].write() {
            Ok(mut map) => map.entry(tool.to_owned()).or_insert(created).clone(),
            Err(_) => created,
        }
    }
}
