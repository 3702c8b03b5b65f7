//! Zero-valued series for everything the dashboard and alerts read, created
//! when the worker starts.
//!
//! Two reasons. A fresh fleet should show flat zero lines, not "No data",
//! so an operator can tell "nothing happened" from "nothing is scraped".
//! And Prometheus's `increase()`/`rate()` cannot see a counter's first
//! increment when the series appears with that increment already in it: the
//! first dead job of a new worker would never fire `ToolqDeadJobsGrowing`.
//! Starting every counter at 0 makes the first event count.
//!
//! Label sets here must match the call sites (executor, acker, reaper,
//! outage) exactly, or a second series with the same labels would be born.

use metrics::{counter, gauge, histogram};

use super::context::Ctx;
use super::executor::INVALID_TOOL_LABEL;
use crate::health::metrics as m;

/// The outcomes the executor counts in `toolq_jobs_finished_total`.
const OUTCOMES: [&str; 3] = ["succeeded", "retrying", "dead"];
/// The tool label the reaper gives jobs it buries for being recovered too
/// often (they crashed every worker that ran them).
pub(super) const POISONED_TOOL_LABEL: &str = "_poisoned";

/// Registers every series at 0 (or leaves it where it is, if something
/// already counted): per served queue × registered tool, per cached tool,
/// per queue, and the process-wide ones.
pub fn register_zero_series(ctx: &Ctx) {
    let tools = ctx.registry.names();
    for keys in &ctx.queues.keys {
        let queue = keys.name.as_str();
        for tool in &tools {
            per_queue_and_tool(queue, tool);
        }
        // Payloads that were not a valid job die under a tool label of their own.
        counter!(m::JOBS_FINISHED, "queue" => queue.to_owned(),
            "tool" => INVALID_TOOL_LABEL, "outcome" => "dead")
        .increment(0);
        for tool in [INVALID_TOOL_LABEL, POISONED_TOOL_LABEL] {
            counter!(m::JOBS_DEAD, "queue" => queue.to_owned(), "tool" => tool).increment(0);
        }
        gauge!(m::JOBS_IN_FLIGHT, "queue" => queue.to_owned()).increment(0.0);
        counter!(m::JOBS_RECOVERED, "queue" => queue.to_owned()).increment(0);
        counter!(m::STALE_ACKS, "queue" => queue.to_owned()).increment(0);
        counter!(m::SETTLE_REFUSED, "queue" => queue.to_owned()).increment(0);
    }
    for tool in &tools {
        let cached = ctx
            .registry
            .get(tool)
            .is_some_and(|t| t.cache_ttl().is_some());
        if cached {
            counter!(m::CACHE_HITS, "tool" => tool.to_string()).increment(0);
            counter!(m::CACHE_MISSES, "tool" => tool.to_string()).increment(0);
        }
        // The Tool trait does not say which tools are rate limited, and a few
        // zero series per tool cost nothing, so every tool gets one.
        counter!(m::RATE_LIMITED, "tool" => tool.to_string()).increment(0);
    }
    counter!(m::REDIS_ERRORS).increment(0);
}

fn per_queue_and_tool(queue: &str, tool: &str) {
    for outcome in OUTCOMES {
        counter!(m::JOBS_FINISHED, "queue" => queue.to_owned(),
            "tool" => tool.to_owned(), "outcome" => outcome)
        .increment(0);
    }
    counter!(m::JOB_RETRIES, "queue" => queue.to_owned(), "tool" => tool.to_owned()).increment(0);
    counter!(m::JOBS_DEAD, "queue" => queue.to_owned(), "tool" => tool.to_owned()).increment(0);
    // Empty histograms render their buckets at 0, so the percentile panels
    // have series (and the names are visible in /metrics) before any job.
    let _ = histogram!(m::JOB_DURATION, "queue" => queue.to_owned(), "tool" => tool.to_owned());
    let _ = histogram!(m::JOB_WAIT, "queue" => queue.to_owned(), "tool" => tool.to_owned());
}
