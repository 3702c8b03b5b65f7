//! Runs one fetched job in its own task: parse, look up the tool, validate,
//! run with a timeout, and turn whatever happens (success, error, timeout,
//! panic) into an [`Outcome`]. Nothing a payload or a tool does can take the
//! worker down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::backoff_random;
use super::context::Ctx;
use super::guard::{self, Before};
use super::job_metrics::{ToolMetrics, UNKNOWN_TOOL_LABEL};
use super::outage::retry_delay;
use super::outcome::Outcome;
use crate::job::{self, DeadJob, ErrorInfo, Job, ResultRef};
use crate::queue::{AckItem, BuryItem, RetryItem};
use crate::tools::ToolError;

/// Tool label for payloads that were not a valid job.
pub const INVALID_TOOL_LABEL: &str = "_invalid";

/// Why a running job may have to stop early.
#[derive(Clone, Copy)]
pub struct Cancel<'a> {
    /// Fires when this worker was declared dead: the job is someone else's.
    pub generation: &'a CancellationToken,
    /// Fires at the end of the shutdown grace period.
    pub stop: &'a CancellationToken,
}

impl Cancel<'_> {
    pub(super) async fn cancelled(&self) {
        tokio::select! {
            _ = self.generation.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

/// Runs the job fetched from queue `qi` under sequence number `seq`.
/// Returns `None` when there is nothing to write: the job was parked for
/// later, taken away from us, or interrupted by shutdown (then it is put
/// back by the shutdown sequence).
pub async fn execute(
    ctx: &Arc<Ctx>,
    qi: usize,
    seq: u64,
    payload: Vec<u8>,
    cancel: Cancel<'_>,
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
    cancel: Cancel<'_>,
) -> Option<Outcome> {
    let Some(tool) = ctx.registry.get(&job.tool).cloned() else {
        let tm = ctx.metrics.tool(qi, UNKNOWN_TOOL_LABEL);
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
            &tm,
        ));
    };
    let tm = ctx.metrics.tool(qi, &job.tool);
    if let Some(run_at) = job.run_at {
        if !Box::pin(due_now(ctx, qi, seq, run_at, payload, cancel)).await? {
            return None;
        }
    }
    if let Err(e) = tool.validate(&job.args) {
        return Some(bury(
            ctx,
            qi,
            seq,
            payload,
            &job,
            &id,
            tool_error(&e),
            None,
            &tm,
        ));
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

    let started_at = job::now_ms();
    // The first attempt only, from the later of enqueue and due time: a
    // retry's backoff or a job scheduled for later is not time spent waiting.
    let record_wait = || {
        if let Some(enqueued) = job.enqueued_at.filter(|_| job.attempt == 0) {
            let since = enqueued.max(job.run_at.unwrap_or(0));
            tm.wait
                .record(started_at.saturating_sub(since) as f64 / 1000.0);
        }
    };
    let lookup = Instant::now();
    // Boxed, and only for tools that cache or are rate limited: the guard's
    // Redis futures would otherwise bloat every job's future, which is
    // copied on every spawn.
    let guarded = tool.cache_ttl().is_some() || ctx.config.tools.rate_limit(&job.tool).is_some();
    let before = match guarded {
        true => {
            Box::pin(guard::before_call(
                ctx, qi, seq, payload, &job, &id, &*tool, timeout, cancel,
            ))
            .await
        }
        false => Before::Unguarded,
    };
    let fill = match before {
        Before::Call(fill) => Some(fill),
        Before::Unguarded => None,
        Before::Stop => return None,
        Before::Cached(output) => {
            record_wait();
            let elapsed = lookup.elapsed();
            let t = Timing {
                started_at,
                elapsed,
            };
            return Some(succeed(ctx, qi, seq, job, id, output, t, &tm, true));
        }
    };
    record_wait();
    let in_flight = &ctx.metrics.in_flight[qi];
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
    let output = match &res {
        Some(Ok(Ok(Ok(output)))) => Some(output),
        _ => None,
    };
    if let Some(fill) = fill {
        Box::pin(fill.finish(ctx, output)).await;
    }
    let res = res?;
    let elapsed = clock.elapsed();
    tm.duration.record(elapsed.as_secs_f64());

    let timing = Timing {
        started_at,
        elapsed,
    };
    let (failure, kind) = match res {
        Ok(Ok(Ok(output))) => {
            return Some(succeed(ctx, qi, seq, job, id, output, timing, &tm, false))
        }
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
            // A remote's Retry-After is honoured, but never beyond the
            // configured ceiling: a hostile header must not park a job for years.
            let delay = retry_after.map(|d| d.min(max)).unwrap_or_else(|| {
                backoff_random(
                    job.attempt,
                    Duration::from_millis(ctx.config.backoff_base_ms),
                    max,
                )
            });
            return Some(retry(
                ctx, qi, seq, payload, job, id, info, delay, timing, &tm,
            ));
        }
    }
    Some(bury(
        ctx,
        qi,
        seq,
        payload,
        &job,
        &id,
        info,
        Some(timing),
        &tm,
    ))
}

/// Parks a job whose `run_at` is still ahead by Redis's clock; true when it
/// should run now. `None` when cancelled while Redis was unreachable.
pub(super) async fn due_now(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    run_at: u64,
    payload: &[u8],
    cancel: Cancel<'_>,
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
fn succeed(
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
fn bury(
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
fn bury_invalid(
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
