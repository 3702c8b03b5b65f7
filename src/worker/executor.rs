//! Runs one fetched job in its own task: parse, look up the tool, validate,
//! run with a timeout, and turn whatever happens (success, error, timeout,
//! panic) into an [`Outcome`]. Nothing a payload or a tool does can take the
//! worker down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::cache::Fill;
use super::context::Ctx;
use super::guard::{self, Before};
use super::job_metrics::{ToolMetrics, UNKNOWN_TOOL_LABEL};
use super::outage::retry_delay;
use super::outcome::{
    bury, bury_invalid, conclude, error, succeed, tool_error, Attempt, CallResult, Outcome, Timing,
};
use crate::job::{self, Job};
use crate::tools::Tool;

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
    let ready = match prepare(ctx, qi, seq, payload, &job, &id, cancel).await {
        Ok(ready) => ready,
        Err(early) => return early,
    };
    attempt(ctx, qi, seq, payload, job, id, ready, cancel).await
}

/// A job whose tool is known, whose time has come and whose args are valid.
struct Ready {
    tool: Arc<dyn Tool>,
    tm: Arc<ToolMetrics>,
    max_attempts: u32,
    timeout: Duration,
}

/// Looks up the tool, parks a job not yet due, and validates the args.
/// `Err` carries what `run_parsed` returns without attempting the job.
async fn prepare(
    ctx: &Arc<Ctx>,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: &Job,
    id: &str,
    cancel: Cancel<'_>,
) -> Result<Ready, Option<Outcome>> {
    let Some(tool) = ctx.registry.get(&job.tool).cloned() else {
        let tm = ctx.metrics.tool(qi, UNKNOWN_TOOL_LABEL);
        let message = unknown_tool_message(ctx, &job.tool);
        tracing::warn!(%message, "burying job");
        let info = error("unknown_tool", message);
        return Err(Some(bury(ctx, qi, seq, payload, job, id, info, None, &tm)));
    };
    let tm = ctx.metrics.tool(qi, &job.tool);
    if let Some(run_at) = job.run_at {
        if !Box::pin(due_now(ctx, qi, seq, run_at, payload, cancel))
            .await
            .ok_or(None)?
        {
            return Err(None);
        }
    }
    if let Err(e) = tool.validate(&job.args) {
        let info = tool_error(&e);
        return Err(Some(bury(ctx, qi, seq, payload, job, id, info, None, &tm)));
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
    Ok(Ready {
        tool,
        tm,
        max_attempts,
        timeout,
    })
}

/// Runs one attempt of a ready job: the cache and rate limit around the
/// call, the call, then its outcome.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    ctx: &Arc<Ctx>,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: Job,
    id: String,
    ready: Ready,
    cancel: Cancel<'_>,
) -> Option<Outcome> {
    let Ready {
        tool,
        tm,
        max_attempts,
        timeout,
    } = ready;
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
    let before = match ctx.is_guarded(&job.tool) {
        true => {
            let guard =
                guard::before_call(ctx, qi, seq, payload, &job, &id, &*tool, timeout, cancel);
            Box::pin(guard).await
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
    let (res, elapsed) = call(ctx, qi, &job, &*tool, timeout, fill, &tm, cancel).await?;
    let timing = Timing {
        started_at,
        elapsed,
    };
    let attempt = Attempt {
        max_attempts,
        timeout,
        timing,
    };
    Some(conclude(ctx, qi, seq, payload, job, id, res, attempt, &tm))
}

/// Calls the tool, racing its timeout and cancellation, and settles the
/// cache fill. `None` when cancelled.
#[allow(clippy::too_many_arguments)]
async fn call(
    ctx: &Arc<Ctx>,
    qi: usize,
    job: &Job,
    tool: &dyn Tool,
    timeout: Duration,
    fill: Option<Fill>,
    tm: &ToolMetrics,
    cancel: Cancel<'_>,
) -> Option<(CallResult, Duration)> {
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
    Some((res, elapsed))
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
