//! What became of one attempt, ready for the acker (the one component that
//! writes outcomes), and how it is built: the call's result classified
//! (success, retry or burial), the result document, and the settling item.
//! Metrics are counted by the acker once the write is known to have landed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::error::Elapsed;

use super::attempt::Attempt;
use super::backoff::backoff_random;
use super::context::Ctx;
use super::executor::{Taken, INVALID_TOOL_LABEL};
use super::job_metrics::ToolMetrics;
use crate::job::{self, DeadJob, ErrorInfo, FollowUp, Head, Job, Prev, ResultRef, Trigger};
use crate::queue::{AckItem, BuryItem, DeferItem, FollowUpItem, RetryItem};
use crate::tools::ToolError;

/// Longest delay a remote's `Retry-After` may impose on a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// One job's outcome for queue number `queue` of this worker.
pub struct Outcome {
    pub queue: usize,
    pub settle: Settle,
}

/// What to write for a job; `tm` is counted once the write landed.
pub enum Settle {
    /// Succeeded: result written, job released. The payload is kept in case
    /// a key of the job's own cannot be written and it must be buried.
    Ack {
        item: AckItem,
        payload: Vec<u8>,
        tm: Arc<ToolMetrics>,
    },
    /// Failed, will run again after a delay.
    Retry {
        item: RetryItem,
        tm: Arc<ToolMetrics>,
    },
    /// Given up on: moved to dead.
    Bury {
        item: BuryItem,
        tm: Arc<ToolMetrics>,
    },
    /// Not due yet, or over its tool's rate limit: parked in the delayed
    /// set unless due by Redis's clock; the job's task waits for `reply`.
    Defer {
        item: DeferItem,
        reply: oneshot::Sender<Deferred>,
    },
    /// Will not be finished here (cancelled): back to pending, unspent.
    PutBack { slot: u64 },
    /// A fetched batch whose reply never came: its jobs back to pending.
    PutBackBatch { batch: u64 },
}

/// The acker's answer to [`Settle::Defer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Due by Redis's clock: run it now.
    DueNow,
    /// Parked, or no longer ours.
    Parked,
}

/// What the tool call came to: its output or error, a panic, or a timeout.
pub(super) type CallResult = Result<std::thread::Result<Result<Value, ToolError>>, Elapsed>;

/// How often and how long the job may run.
#[derive(Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_attempts: u32,
    pub(super) timeout: Duration,
}

#[derive(Clone, Copy)]
pub(super) struct Timing {
    pub(super) started_at: u64,
    pub(super) elapsed: Duration,
}

impl Attempt {
    /// Turns the call's result into what to write: success, a retry after
    /// backoff while attempts remain and the error allows it, or burial.
    pub(super) fn conclude(&self, res: CallResult, limits: Limits, timing: Timing) -> Settle {
        let (failure, kind) = match res {
            Ok(Ok(Ok(output))) => return self.succeed(output, timing, false),
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
                    limits.timeout.as_millis()
                )),
                "timeout",
            ),
        };
        let info = error(kind, self.ctx.scrub.text(failure.to_string()));
        tracing::info!(error = %info.message, kind = %info.kind, "attempt failed");
        if let ToolError::Retryable { retry_after, .. } = &failure {
            if self.job.attempt.saturating_add(1) < limits.max_attempts {
                let config = &self.ctx.config;
                let max = Duration::from_millis(config.backoff_max_ms);
                // A remote's Retry-After is honoured even above our own backoff
                // ceiling (it knows its quota), but a hostile or broken header
                // must not park a job for years: at most an hour, or the
                // ceiling if that is longer.
                let honoured = max.max(MAX_RETRY_AFTER);
                let delay = retry_after.map(|d| d.min(honoured)).unwrap_or_else(|| {
                    backoff_random(
                        self.job.attempt,
                        Duration::from_millis(config.backoff_base_ms),
                        max,
                    )
                });
                return self.retry(info, delay, timing);
            }
        }
        self.bury(info, Some(timing))
    }

    fn result_ttl(&self) -> u64 {
        self.job
            .result_ttl_s
            .unwrap_or(self.ctx.config.result_ttl_s)
    }

    pub(super) fn succeed(&self, output: Value, t: Timing, cached: bool) -> Settle {
        let doc = Doc {
            status: "succeeded",
            output: Some(&output),
            error: None,
            timing: Some(t),
            cached,
        };
        let result = result_doc(&self.ctx, &self.job, &self.id, doc);
        let prev = Prev {
            id: &self.id,
            output: Some(&output),
            error: None,
        };
        let follow_up = self
            .job
            .on_success
            .as_deref()
            .map(|t| follow_up(&self.ctx, self.queue, t, Trigger::Success, &prev));
        Settle::Ack {
            item: AckItem {
                seq: self.slot,
                result_ttl_s: self.result_ttl(),
                result,
                batch: self.job.batch.clone(),
                unique_key: self.job.unique_key.clone(),
                id: self.id.clone(),
                follow_up,
            },
            // Filled in by `Attempt::finish`, which owns the payload.
            payload: Vec::new(),
            tm: self.tm.clone(),
        }
    }

    fn retry(&self, info: ErrorInfo, delay: Duration, t: Timing) -> Settle {
        let next = match job::rewrite_payload(
            &self.payload,
            &self.id,
            self.job.attempt.saturating_add(1),
            self.job.recoveries,
        ) {
            Ok(p) => p,
            Err(e) => return self.bury(error("internal", e.to_string()), Some(t)),
        };
        let result = result_doc(
            &self.ctx,
            &self.job,
            &self.id,
            Doc::failed("retrying", &info, Some(t)),
        );
        Settle::Retry {
            item: RetryItem {
                seq: self.slot,
                delay_ms: delay.as_millis() as u64,
                payload: next,
                result_ttl_s: self.result_ttl(),
                result,
                id: self.id.clone(),
            },
            tm: self.tm.clone(),
        }
    }

    /// Cancelled by an operator while it ran: its result says `cancelled`,
    /// a waiting producer is told, and it stays out of the dead set.
    pub(super) fn cancelled(&self) -> Settle {
        let info = error("cancelled", "cancelled by an operator".to_owned());
        let result = result_doc(
            &self.ctx,
            &self.job,
            &self.id,
            Doc::failed("cancelled", &info, None),
        );
        Settle::Bury {
            item: BuryItem {
                seq: self.slot,
                id: Some(self.id.clone()),
                dead_entry_prefix: String::new(),
                result_ttl_s: self.result_ttl(),
                result,
                batch: self.job.batch.clone(),
                unique_key: self.job.unique_key.clone(),
                cancelled: true,
                // An operator's cancel stops the chain: not a failure.
                follow_up: None,
            },
            tm: self.tm.clone(),
        }
    }

    pub(super) fn bury(&self, info: ErrorInfo, t: Option<Timing>) -> Settle {
        bury_job(
            &self.ctx,
            &Buried {
                queue: self.queue,
                slot: self.slot,
                payload: &self.payload,
                job: &self.job,
                id: &self.id,
            },
            info,
            t,
            self.tm.clone(),
        )
    }
}

/// The follow-up `t` of the job settled as `prev`, for the settling call.
fn follow_up(
    ctx: &Ctx,
    qi: usize,
    t: &FollowUp,
    trigger: Trigger,
    prev: &Prev<'_>,
) -> FollowUpItem {
    FollowUpItem {
        queue: t
            .queue
            .clone()
            .unwrap_or_else(|| ctx.queues.keys[qi].name.clone()),
        payload: t.payload(trigger.id(prev.id), prev, job::now_ms()),
    }
}

/// A job being buried, as the burial needs it.
struct Buried<'a> {
    queue: usize,
    slot: u64,
    payload: &'a [u8],
    job: &'a Job,
    id: &'a str,
}

fn bury_job(
    ctx: &Ctx,
    b: &Buried<'_>,
    info: ErrorInfo,
    t: Option<Timing>,
    tm: Arc<ToolMetrics>,
) -> Settle {
    let with_id = job::rewrite_payload(b.payload, b.id, b.job.attempt, b.job.recoveries).ok();
    let dead_job = match &with_id {
        Some(p) => DeadJob::Parsed(p),
        None => DeadJob::raw(b.payload, ctx.config.dead_max_payload_bytes),
    };
    let prefix = job::dead_entry_prefix(&dead_job, &info, &ctx.worker_id, b.slot);
    let result = result_doc(ctx, b.job, b.id, Doc::failed("dead", &info, t));
    let follow_up = b.job.on_failure.as_deref().map(|f| {
        let prev = Prev {
            id: b.id,
            output: None,
            error: serde_json::to_value(&info).ok(),
        };
        follow_up(ctx, b.queue, f, Trigger::Failure, &prev)
    });
    Settle::Bury {
        item: BuryItem {
            seq: b.slot,
            id: Some(b.id.to_owned()),
            dead_entry_prefix: prefix,
            result_ttl_s: b.job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s),
            result,
            batch: b.job.batch.clone(),
            unique_key: b.job.unique_key.clone(),
            cancelled: false,
            follow_up,
        },
        tm,
    }
}

/// A succeeded job whose own key (its notification list or unique lock)
/// cannot be written: buried instead, with the reason naming the key. The
/// burial skips that key, so the job's result is still written.
pub(super) fn bury_unwritable(
    ctx: &Ctx,
    qi: usize,
    item: &AckItem,
    payload: &[u8],
    why: String,
) -> Settle {
    tracing::warn!(queue = %ctx.queues.keys[qi].name, job_id = %item.id, reason = %why,
        "burying a job whose own key cannot be written");
    let Ok(job) = job::parse(payload, ctx.limits) else {
        return bury_invalid_at(ctx, qi, item.seq, payload, "unwritable", why);
    };
    let tm = ctx.metrics.tool(qi, &job.tool);
    let buried = Buried {
        queue: qi,
        slot: item.seq,
        payload,
        job: &job,
        id: &item.id,
    };
    bury_job(ctx, &buried, error("unwritable", why), None, tm)
}

/// The `dead` result of a job refused before it ran (see `oversized`).
pub(super) fn dead_result(ctx: &Ctx, job: &Job, id: &str, info: &ErrorInfo) -> String {
    result_doc(ctx, job, id, Doc::failed("dead", info, None))
}

/// What a result document says of the attempt, besides the job itself.
struct Doc<'a> {
    status: &'a str,
    output: Option<&'a Value>,
    error: Option<&'a ErrorInfo>,
    /// `None` when nothing ran (the job was refused before its call).
    timing: Option<Timing>,
    cached: bool,
}

impl<'a> Doc<'a> {
    fn failed(status: &'a str, error: &'a ErrorInfo, timing: Option<Timing>) -> Self {
        Doc {
            status,
            output: None,
            error: Some(error),
            timing,
            cached: false,
        }
    }
}

fn result_doc(ctx: &Ctx, job: &Job, id: &str, doc: Doc<'_>) -> String {
    let Doc {
        status,
        output,
        error,
        timing,
        cached,
    } = doc;
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
        attempts: job.attempt.saturating_add(1),
        recoveries: job.recoveries,
        enqueued_at: job.enqueued_at,
        started_at: timing.started_at,
        elapsed: timing.elapsed,
        worker: &ctx.worker_id,
        cached,
        meta: job.meta.as_ref(),
    }
    .to_json()
}

/// A payload that is not a valid job: buried as it came, with why.
pub(super) fn bury_invalid(ctx: &Ctx, taken: &Taken, kind: &str, message: String) -> Outcome {
    let settle = bury_invalid_at(ctx, taken.queue, taken.slot, &taken.payload, kind, message);
    Outcome {
        queue: taken.queue,
        settle,
    }
}

fn bury_invalid_at(
    ctx: &Ctx,
    qi: usize,
    slot: u64,
    payload: &[u8],
    kind: &str,
    message: String,
) -> Settle {
    // What can still be read of it: a producer waiting on its id or batch
    // gets the dead result instead of waiting for ever.
    let head = job::read_head(payload);
    tracing::warn!(queue = %ctx.queues.keys[qi].name, kind, error = %message,
        job_id = ?head.id, "burying invalid payload");
    let info = error(kind, message);
    let named = named_by_head(ctx, &head, &info);
    Settle::Bury {
        item: BuryItem {
            seq: slot,
            dead_entry_prefix: job::dead_entry_prefix(
                &DeadJob::raw(payload, ctx.config.dead_max_payload_bytes),
                &info,
                &ctx.worker_id,
                slot,
            ),
            id: named.id,
            result_ttl_s: named.result_ttl_s,
            result: named.result,
            batch: named.batch,
            unique_key: named.unique_key,
            cancelled: false,
            // Not a valid job: its templates cannot be trusted.
            follow_up: None,
        },
        tm: ctx.metrics.tool(qi, INVALID_TOOL_LABEL),
    }
}

/// What the burial of a payload that is not a valid job writes besides its
/// dead entry, when its fields still name the job.
pub(super) struct Named {
    pub(super) id: Option<String>,
    pub(super) result: String,
    pub(super) result_ttl_s: u64,
    pub(super) batch: Option<String>,
    pub(super) unique_key: Option<String>,
}

/// The dead result under the id `head` names, its batch to notify and its
/// unique lock to release; nothing without a (non-empty) id, since there is
/// no result key to write nor a name to notify.
pub(super) fn named_by_head(ctx: &Ctx, head: &Head, info: &ErrorInfo) -> Named {
    let Some(id) = head.id.clone().filter(|id| !id.is_empty()) else {
        return Named {
            id: None,
            result: String::new(),
            result_ttl_s: 0,
            batch: None,
            unique_key: None,
        };
    };
    let mut stub = Job::new(head.tool.clone().unwrap_or_default(), Value::Null);
    stub.attempt = head.attempt.unwrap_or(0);
    stub.recoveries = head.recoveries.unwrap_or(0);
    stub.enqueued_at = head.enqueued_at;
    let result_ttl_s = head
        .result_ttl_s
        .unwrap_or(ctx.config.result_ttl_s)
        .min(job::MAX_RESULT_TTL_S);
    Named {
        result: dead_result(ctx, &stub, &id, info),
        id: Some(id),
        result_ttl_s,
        batch: head.batch.clone(),
        unique_key: head.unique_key.clone(),
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
