//! Runs one fetched job in its own task: parse, look up the tool, validate,
//! run with a timeout, and turn whatever happens (success, error, timeout,
//! panic) into an [`Outcome`]. Nothing a payload or a tool does can take the
//! worker down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use metrics::{counter, gauge, histogram};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::backoff_random;
use super::context::Ctx;
use super::outage::retry_delay;
use super::outcome::Outcome;
use crate::health::metrics as m;
use crate::job::{self, DeadJob, ErrorInfo, Job, JobResult};
use crate::queue::{AckItem, BuryItem, RetryItem};
use crate::tools::ToolError;

/// Tool label for payloads that were not a valid job.
pub const INVALID_TOOL_LABEL: &str = "_invalid";

/// Runs the job fetched from queue `qi` under sequence number `seq`.
/// Returns `None` when there is nothing to write: the job was parked for
/// later, taken away from us, or interrupted by shutdown (then it is put
/// back by the shutdown sequence).
pub async fn execute(
    ctx: &Arc<Ctx>,
    qi: usize,
    seq: u64,
    payload: Vec<u8>,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let job = match job::parse(&payload, ctx.limits) {
        Ok(job) => job,
        Err(e) => {
            return Some(bury_invalid(
                ctx,
                qi,
                seq,
                &payload,
                e.kind(),
                e.to_string(),
            ));
        }
    };
    let id = job
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!("job", job_id = %id, tool = %job.tool,
        queue = %ctx.queues.keys[qi].name, attempt = job.attempt);
    run_parsed(ctx, qi, seq, &payload, job, id, cancel)
        .instrument(span)
        .await
}

async fn run_parsed(
    ctx: &Arc<Ctx>,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: Job,
    id: String,
    cancel: &CancellationToken,
) -> Option<Outcome> {
    let Some(tool) = ctx.registry.get(&job.tool).cloned() else {
        let message = unknown_tool_message(ctx, &job.tool);
        tracing::warn!(%message, "burying job");
        return Some(bury(
            ctx,
            qi,
            seq,
            payload,
            &job,
            &id,
            error("unknown_tool", message),
            None,
        ));
    };
    if let Some(run_at) = job.run_at {
        if !due_now(ctx, qi, seq, run_at, payload, cancel).await? {
            return None;
        }
    }
    if let Err(e) = tool.validate(&job.args) {
        return Some(bury(ctx, qi, seq, payload, &job, &id, tool_error(&e), None));
    }
    let max_attempts = job
        .max_attempts
        .or_else(|| tool.max_attempts())
        .unwrap_or(ctx.config.max_attempts)
        .max(1);
    let timeout = job
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or_else(|| tool.timeout());

    let queue = ctx.queues.keys[qi].name.as_str();
    let started_at = job::now_ms();
    if let Some(enqueued) = job.enqueued_at {
        let wait = started_at.saturating_sub(enqueued) as f64 / 1000.0;
        histogram!(m::JOB_WAIT, "queue" => queue.to_owned(), "tool" => job.tool.clone())
            .record(wait);
    }
    let in_flight = gauge!(m::JOBS_IN_FLIGHT, "queue" => queue.to_owned());
    in_flight.increment(1.0);
    ctx.health.job_started();
    let clock = Instant::now();
    let call = AssertUnwindSafe(tool.call_attempt(&job.args, job.attempt)).catch_unwind();
    let res = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = tokio::time::timeout(timeout, call) => Some(r),
    };
    in_flight.decrement(1.0);
    ctx.health.job_finished();
    let res = res?;
    let elapsed = clock.elapsed();
    histogram!(m::JOB_DURATION, "queue" => queue.to_owned(), "tool" => job.tool.clone())
        .record(elapsed.as_secs_f64());

    let timing = Timing {
        started_at,
        elapsed,
    };
    let failure = match res {
        Ok(Ok(Ok(output))) => return Some(succeed(ctx, qi, seq, job, id, output, timing)),
        Ok(Ok(Err(e))) => e,
        Ok(Err(panic)) => ToolError::retryable(format!("tool panicked: {}", panic_message(&panic))),
        Err(_) => ToolError::Retryable {
            message: format!("attempt timed out after {} ms", timeout.as_millis()),
            retry_after: None,
        },
    };
    let mut info = tool_error(&failure);
    if failure.to_string().starts_with("attempt timed out") {
        info.kind = "timeout".into();
    } else if failure.to_string().starts_with("tool panicked") {
        info.kind = "panic".into();
    }
    tracing::info!(error = %info.message, kind = %info.kind, "attempt failed");
    if let ToolError::Retryable { retry_after, .. } = &failure {
        if job.attempt + 1 < max_attempts {
            let delay = retry_after.unwrap_or_else(|| {
                backoff_random(
                    job.attempt,
                    Duration::from_millis(ctx.config.backoff_base_ms),
                    Duration::from_millis(ctx.config.backoff_max_ms),
                )
            });
            return Some(retry(ctx, qi, seq, payload, job, id, info, delay, timing));
        }
    }
    Some(bury(ctx, qi, seq, payload, &job, &id, info, Some(timing)))
}

/// Parks a job whose `run_at` is still ahead by Redis's clock; true when it
/// should run now. `None` when cancelled while Redis was unreachable.
async fn due_now(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    run_at: u64,
    payload: &[u8],
    cancel: &CancellationToken,
) -> Option<bool> {
    let keys = &ctx.queues.keys[qi];
    let mut failures = 0;
    loop {
        match ctx
            .broker
            .defer(keys, &ctx.worker_id, seq, run_at, payload)
            .await
        {
            Ok(Some(parked)) => return Some(!parked),
            Ok(None) => return Some(false),
            Err(e) => {
                ctx.outage.failed("defer", &e);
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(retry_delay(failures)) => {}
                }
                failures += 1;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Timing {
    started_at: u64,
    elapsed: Duration,
}

fn result_doc(
    ctx: &Ctx,
    job: &Job,
    id: &str,
    status: &str,
    output: Option<Value>,
    error: Option<ErrorInfo>,
    timing: Option<Timing>,
) -> String {
    let now = job::now_ms();
    let timing = timing.unwrap_or(Timing {
        started_at: now,
        elapsed: Duration::ZERO,
    });
    let doc = JobResult {
        id: id.to_owned(),
        tool: job.tool.clone(),
        status: status.to_owned(),
        output,
        error,
        attempts: job.attempt + 1,
        recoveries: job.recoveries,
        enqueued_at: job.enqueued_at,
        started_at: timing.started_at,
        finished_at: timing.started_at + timing.elapsed.as_millis() as u64,
        duration_ms: timing.elapsed.as_secs_f64() * 1000.0,
        worker: ctx.worker_id.clone(),
        cached: false,
        meta: job.meta.clone(),
    };
    serde_json::to_string(&doc).unwrap_or_else(|e| {
        format!(r#"{{"id":{},"status":"{status}","error":{{"kind":"internal","message":"result not serialisable: {e}"}}}}"#,
            Value::String(id.to_owned()))
    })
}

fn succeed(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    job: Job,
    id: String,
    output: Value,
    t: Timing,
) -> Outcome {
    finished(ctx, qi, &job.tool, "succeeded");
    let result = result_doc(ctx, &job, &id, "succeeded", Some(output), None, Some(t));
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
fn retry(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: Job,
    id: String,
    info: ErrorInfo,
    delay: Duration,
    t: Timing,
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
            )
        }
    };
    finished(ctx, qi, &job.tool, "retried");
    counter!(m::JOB_RETRIES, "queue" => ctx.queues.keys[qi].name.clone(), "tool" => job.tool.clone())
        .increment(1);
    let result = result_doc(ctx, &job, &id, "failed", None, Some(info), Some(t));
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
fn bury(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: &Job,
    id: &str,
    info: ErrorInfo,
    t: Option<Timing>,
) -> Outcome {
    finished(ctx, qi, &job.tool, "dead");
    dead_counter(ctx, qi, &job.tool);
    let with_id = job::rewrite_payload(payload, id, job.attempt, job.recoveries).ok();
    let dead_job = match &with_id {
        Some(p) => DeadJob::Parsed(p),
        None => DeadJob::Raw(payload),
    };
    let prefix = job::dead_entry_prefix(&dead_job, &info);
    let result = result_doc(ctx, job, id, "dead", None, Some(info), t);
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
fn bury_invalid(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    kind: &str,
    message: String,
) -> Outcome {
    tracing::warn!(queue = %ctx.queues.keys[qi].name, kind, %message, "burying invalid payload");
    finished(ctx, qi, INVALID_TOOL_LABEL, "dead");
    dead_counter(ctx, qi, INVALID_TOOL_LABEL);
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

fn finished(ctx: &Ctx, qi: usize, tool: &str, outcome: &'static str) {
    counter!(m::JOBS_FINISHED, "queue" => ctx.queues.keys[qi].name.clone(),
        "tool" => tool.to_owned(), "outcome" => outcome)
    .increment(1);
}

fn dead_counter(ctx: &Ctx, qi: usize, tool: &str) {
    counter!(m::JOBS_DEAD, "queue" => ctx.queues.keys[qi].name.clone(), "tool" => tool.to_owned())
        .increment(1);
}

fn error(kind: &str, message: String) -> ErrorInfo {
    ErrorInfo {
        kind: kind.to_owned(),
        message,
    }
}

fn tool_error(e: &ToolError) -> ErrorInfo {
    error(e.kind(), e.to_string())
}

fn unknown_tool_message(ctx: &Ctx, tool: &str) -> String {
    if let Some((_, msg)) = ctx.unconfigured.iter().find(|(name, _)| name == tool) {
        return msg.clone();
    }
    let mut shown: String = tool.chars().take(100).collect();
    if shown.len() < tool.len() {
        shown.push('…');
    }
    format!(
        "unknown tool `{shown}` (registered: {})",
        ctx.registry.names().join(", ")
    )
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
