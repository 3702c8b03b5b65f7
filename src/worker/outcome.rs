//! What became of one attempt, ready to be written by the acker, and how it
//! is built: the call's result classified (success, retry or burial), the
//! result document, and the ack, retry or burial item with the metrics each
//! counts.

use std::time::Duration;

use serde_json::Value;
use tokio::time::error::Elapsed;

use super::backoff::backoff_random;
use super::context::Ctx;
use super::executor::INVALID_TOOL_LABEL;
use super::job_metrics::ToolMetrics;
use crate::job::{self, DeadJob, ErrorInfo, Job, ResultRef};
use crate::queue::{AckItem, BuryItem, RetryItem};
use crate::tools::ToolError;

/// Longest delay a remote's `Retry-After` may impose on a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// One job's outcome for queue number `queue` of this worker.
#[derive(Debug)]
pub enum Outcome {
    /// Finished: result written, job removed from active.
    Ack { queue: usize, item: AckItem },
    /// Failed, will run again after a delay.
    Retry { queue: usize, item: RetryItem },
    /// Given up on: moved to dead.
    Bury { queue: usize, item: BuryItem },
}

/// What the tool call came to: its output or error, a panic, or a timeout.
pub(super) type CallResult = Result<std::thread::Result<Result<Value, ToolError>>, Elapsed>;

/// The attempt's limits and timing, for [`conclude`].
pub(super) struct Attempt {
    pub(super) max_attempts: u32,
    pub(super) timeout: Duration,
    pub(super) timing: Timing,
}

/// Turns the call's result into the outcome: success, a retry after
/// backoff while attempts remain and the error allows it, or burial.
#[allow(clippy::too_many_arguments)]
pub(super) fn conclude(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: Job,
    id: String,
    res: CallResult,
    attempt: Attempt,
    tm: &ToolMetrics,
) -> Outcome {
    let Attempt {
        max_attempts,
        timeout,
        timing,
    } = attempt;
    let (failure, kind) = match res {
        Ok(Ok(Ok(output))) => return succeed(ctx, qi, seq, job, id, output, timing, tm, false),
        Ok(Ok(Err(e))) => {
            let kind = e.kind();
            (e, kind)
        }
        Ok(Err(panic)) => (
            ToolError::retryable(format!("tool panicked: {}", panic_message(&panic))),
            "panic",
        ),
        Err(_) => (
            ToolError::retryable(format!(
                "attempt timed out after {} ms",
                timeout.as_millis()
            )),
            "timeout",
        ),
    };
    let info = error(kind, failure.to_string());
    tracing::info!(error = %info.message, kind = %info.kind, "attempt failed");
    if let ToolError::Retryable { retry_after, .. } = &failure {
        if job.attempt + 1 < max_attempts {
            let max = Duration::from_millis(ctx.config.backoff_max_ms);
            // A remote's Retry-After is honoured even above our own backoff
            // ceiling (it knows its quota), but a hostile or broken header
            // must not park a job for years: at most an hour, or the
            // ceiling if that is longer.
            let honoured = max.max(MAX_RETRY_AFTER);
            let delay = retry_after.map(|d| d.min(honoured)).unwrap_or_else(|| {
                backoff_random(
                    job.attempt,
                    Duration::from_millis(ctx.config.backoff_base_ms),
                    max,
                )
            });
            return retry(ctx, qi, seq, payload, job, id, info, delay, timing, tm);
        }
    }
    bury(ctx, qi, seq, payload, &job, &id, info, Some(timing), tm)
}

#[derive(Clone, Copy)]
pub(super) struct Timing {
    pub(super) started_at: u64,
    pub(super) elapsed: Duration,
}

#[allow(clippy::too_many_arguments)]
fn result_doc(
    ctx: &Ctx,
    job: &Job,
    id: &str,
    status: &str,
    output: Option<&Value>,
    error: Option<&ErrorInfo>,
    timing: Option<Timing>,
    cached: bool,
) -> String {
    let timing = timing.unwrap_or(Timing {
        started_at: job::now_ms(),
        elapsed: Duration::ZERO,
    });
    ResultRef {
        id,
        tool: &job.tool,
        status,
        output,
        error,
        attempts: job.attempt + 1,
        recoveries: job.recoveries,
        enqueued_at: job.enqueued_at,
        started_at: timing.started_at,
        finished_at: timing.started_at + timing.elapsed.as_millis() as u64,
        duration_ms: timing.elapsed.as_secs_f64() * 1000.0,
        worker: &ctx.worker_id,
        cached,
        meta: job.meta.as_ref(),
    }
    .to_json()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn succeed(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    job: Job,
    id: String,
    output: Value,
    t: Timing,
    tm: &ToolMetrics,
    cached: bool,
) -> Outcome {
    tm.succeeded.increment(1);
    let result = result_doc(
        ctx,
        &job,
        &id,
        "succeeded",
        Some(&output),
        None,
        Some(t),
        cached,
    );
    Outcome::Ack {
        queue: qi,
        item: AckItem {
            seq,
            result_ttl_s: job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s),
            result,
            succeeded: true,
            batch: job.batch,
            unique_key: job.unique_key,
            id,
        },
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn retry(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: Job,
    id: String,
    info: ErrorInfo,
    delay: Duration,
    t: Timing,
    tm: &ToolMetrics,
) -> Outcome {
    let next = match job::rewrite_payload(payload, &id, job.attempt + 1, job.recoveries) {
        Ok(p) => p,
        Err(e) => {
            return bury(
                ctx,
                qi,
                seq,
                payload,
                &job,
                &id,
                error("internal", e.to_string()),
                Some(t),
                tm,
            )
        }
    };
    tm.retried.increment(1);
    tm.retries.increment(1);
    let result = result_doc(ctx, &job, &id, "failed", None, Some(&info), Some(t), false);
    Outcome::Retry {
        queue: qi,
        item: RetryItem {
            seq,
            delay_ms: delay.as_millis() as u64,
            payload: next,
            result_ttl_s: job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s),
            result,
            id,
        },
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn bury(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: &Job,
    id: &str,
    info: ErrorInfo,
    t: Option<Timing>,
    tm: &ToolMetrics,
) -> Outcome {
    tm.dead.increment(1);
    tm.dead_total.increment(1);
    let with_id = job::rewrite_payload(payload, id, job.attempt, job.recoveries).ok();
    let dead_job = match &with_id {
        Some(p) => DeadJob::Parsed(p),
        None => DeadJob::Raw(payload),
    };
    let prefix = job::dead_entry_prefix(&dead_job, &info);
    let result = result_doc(ctx, job, id, "dead", None, Some(&info), t, false);
    Outcome::Bury {
        queue: qi,
        item: BuryItem {
            seq,
            id: Some(id.to_owned()),
            dead_entry_prefix: prefix,
            result_ttl_s: job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s),
            result,
            batch: job.batch.clone(),
            unique_key: job.unique_key.clone(),
        },
    }
}

/// A payload that is not a valid job: buried as it came, with why.
pub(super) fn bury_invalid(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    kind: &str,
    message: String,
) -> Outcome {
    tracing::warn!(queue = %ctx.queues.keys[qi].name, kind, %message, "burying invalid payload");
    let tm = ctx.metrics.tool(qi, INVALID_TOOL_LABEL);
    tm.dead.increment(1);
    tm.dead_total.increment(1);
    let info = error(kind, message);
    Outcome::Bury {
        queue: qi,
        item: BuryItem {
            seq,
            id: None,
            dead_entry_prefix: job::dead_entry_prefix(&DeadJob::Raw(payload), &info),
            result_ttl_s: 0,
            result: String::new(),
            batch: None,
            unique_key: None,
        },
    }
}

pub(super) fn error(kind: &str, message: String) -> ErrorInfo {
    ErrorInfo {
        kind: kind.to_owned(),
        message,
    }
}

pub(super) fn tool_error(e: &ToolError) -> ErrorInfo {
    error(e.kind(), e.to_string())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
