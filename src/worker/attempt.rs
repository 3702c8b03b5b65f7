//! One attempt of one job, as one value: where it is held (queue, slot),
//! what it is (payload, parsed job, id, tool) and what may stop it. Its
//! steps are methods, in order: [`run`](Attempt::run) parks a job not yet
//! due and validates the args; the guard (cache, rate limit) and the call
//! follow; [`conclude`](Attempt::conclude) turns the call's result into the
//! outcome. Nothing here writes to Redis: every settlement, parking
//! included, goes to the acker as an [`Outcome`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::oneshot;

use super::acker::AckSender;
use super::cache::Fill;
use super::context::Ctx;
use super::executor::{unknown_tool_message, Cancel};
use super::guard::{self, Before};
use super::job_metrics::ToolMetrics;
use super::outcome::{error, tool_error, CallResult, Deferred, Limits, Outcome, Settle, Timing};
use super::progress::CallProgress;
use crate::job::{self, Job};
use crate::queue::DeferItem;
use crate::tools::{JobContext, Tool, ToolError};

pub struct Attempt {
    pub(super) ctx: Arc<Ctx>,
    pub(super) queue: usize,
    /// The job's slot in this worker's active hash: how every settling
    /// script names it.
    pub(super) slot: u64,
    /// As fetched: retries and burials rewrite it, keeping every field the
    /// producer wrote.
    pub(super) payload: Vec<u8>,
    pub(super) job: Job,
    /// The job's id, or one minted for it (stored with it before it is
    /// kept anywhere but pending).
    pub(super) id: String,
    /// `None` when no tool of that name is registered.
    pub(super) tool: Option<Arc<dyn Tool>>,
    pub(super) tm: Arc<ToolMetrics>,
    pub(super) acker: AckSender,
    pub(super) cancel: Cancel,
}

/// What became of a request to park the job.
pub(super) enum Parking {
    /// Due after all: run it now.
    DueNow,
    /// Parked (or taken over meanwhile): nothing more to do.
    Parked,
    /// Cancelled while waiting: put it back.
    Cancelled,
}

impl Attempt {
    /// Runs the attempt to its outcome (see `executor::execute`).
    pub(super) async fn run(self) -> Option<Outcome> {
        // Cancelled before it started (a prefetched job, or one fetched as
        // the cancel arrived): settled as cancelled, nothing called.
        if self.cancel.by_operator() {
            return Some(self.put_back());
        }
        let Some(tool) = self
            .tool
            .clone()
            .or_else(|| self.ctx.mcp.find(&self.job.tool))
        else {
            return Some(self.without_tool());
        };
        if let Some(run_at) = self.job.run_at {
            match Box::pin(self.park(run_at)).await {
                Parking::DueNow => {}
                Parking::Parked => return None,
                Parking::Cancelled => return Some(self.put_back()),
            }
        }
        if self.job.recoveries > 0 && !tool.redeliver() {
            let message = format!(
                "the worker running this job died {} time(s); `{}` is not safe to run twice, so it was not run again (retry it with `toolq dead retry`)",
                self.job.recoveries, self.job.tool
            );
            let settle = self.bury(error("interrupted", message), None);
            return Some(self.finish(settle));
        }
        // A validator (a JSON Schema compiled from a server's listing) is
        // outside code too: a panic in it fails the job, not its task.
        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| tool.validate(&self.job.args)))
            .unwrap_or_else(|_| {
                Err(ToolError::InvalidArgs(
                    "argument validation panicked".into(),
                ))
            });
        if let Err(e) = checked {
            let settle = self.bury(tool_error(&self.ctx.scrub.error(e)), None);
            return Some(self.finish(settle));
        }
        let limits = self.limits(&*tool);
        self.attempt(tool, limits).await
    }

    /// The cache and rate limit around the call, the call, its outcome.
    async fn attempt(self, tool: Arc<dyn Tool>, limits: Limits) -> Option<Outcome> {
        let started_at = job::now_ms();
        let lookup = Instant::now();
        // Boxed, and only for tools that cache or are rate limited: the guard's
        // Redis futures would otherwise bloat every job's future, which is
        // copied on every spawn.
        let before = match self.ctx.is_guarded(&self.job.tool) {
            true => Box::pin(guard::before_call(&self, &*tool, limits.timeout)).await,
            false => Before::Unguarded,
        };
        let fill = match before {
            Before::Call(fill) => Some(fill),
            Before::Unguarded => None,
            Before::Parked => return None,
            Before::Cancelled => return Some(self.put_back()),
            Before::Cached(output) => {
                // An entry written before a secret was configured, or by
                // something else, is scrubbed like a fresh output.
                let output = self.ctx.scrub.value(output);
                self.record_wait(started_at);
                let timing = Timing {
                    started_at,
                    elapsed: lookup.elapsed(),
                };
                let settle = self.succeed(output, timing, true);
                return Some(self.finish(settle));
            }
        };
        self.record_wait(started_at);
        let Some((res, elapsed)) = self.call(&*tool, limits.timeout, fill).await else {
            return Some(self.interrupted(&*tool));
        };
        let timing = Timing {
            started_at,
            elapsed,
        };
        let settle = self.conclude(res, limits, timing);
        Some(self.finish(settle))
    }

    /// A job naming no registered tool: buried as `unknown_tool`, unless
    /// its name belongs to a tool source that may not have listed it yet (an
    /// MCP server starting or restarting): then it is retried with backoff.
    fn without_tool(self) -> Outcome {
        if let Some(source) = self.ctx.registry.namespace_of(&self.job.tool) {
            let message = format!(
                "tool `{}` is not listed by MCP server `{source}` (yet): the server may be starting or restarting",
                self.job.tool
            );
            let res: CallResult = Ok(Ok(Err(ToolError::retryable(message))));
            let limits = Limits {
                max_attempts: self
                    .job
                    .max_attempts
                    .unwrap_or(self.ctx.config.max_attempts)
                    .max(1),
                timeout: crate::tools::DEFAULT_TOOL_TIMEOUT,
            };
            let timing = Timing {
                started_at: job::now_ms(),
                elapsed: Duration::ZERO,
            };
            let settle = self.conclude(res, limits, timing);
            return self.finish(settle);
        }
        let message = unknown_tool_message(&self.ctx, &self.job.tool);
        tracing::warn!(error = %message, "burying job");
        let settle = self.bury(error("unknown_tool", message), None);
        self.finish(settle)
    }

    fn limits(&self, tool: &dyn Tool) -> Limits {
        Limits {
            max_attempts: self
                .job
                .max_attempts
                .or_else(|| tool.max_attempts())
                .unwrap_or(self.ctx.config.max_attempts)
                .max(1),
            timeout: self
                .job
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or_else(|| tool.timeout()),
        }
    }

    /// The first attempt only, from the later of enqueue and due time: a
    /// retry's backoff or a job scheduled for later is not time spent waiting.
    fn record_wait(&self, started_at: u64) {
        if let Some(enqueued) = self.job.enqueued_at.filter(|_| self.job.attempt == 0) {
            let since = enqueued.max(self.job.run_at.unwrap_or(0));
            self.tm
                .wait
                .record(started_at.saturating_sub(since) as f64 / 1000.0);
        }
    }

    /// Calls the tool, racing its timeout and cancellation, and settles the
    /// cache fill. `None` when cancelled.
    async fn call(
        &self,
        tool: &dyn Tool,
        timeout: Duration,
        fill: Option<Fill>,
    ) -> Option<(CallResult, Duration)> {
        let ctx = &self.ctx;
        let in_flight = &ctx.metrics.in_flight[self.queue];
        in_flight.increment(1.0);
        ctx.health.job_started();
        let clock = Instant::now();
        let progress = self.progress(timeout);
        let queue = self.ctx.queues.keys[self.queue].name.as_str();
        let cx = JobContext::new(&self.id, self.job.attempt, queue).with_sink(&progress);
        let call = AssertUnwindSafe(tool.call(&self.job.args, cx)).catch_unwind();
        let res = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            r = tokio::time::timeout(timeout, call) => Some(r),
        };
        progress.finish().await;
        in_flight.decrement(1.0);
        ctx.health.job_finished();
        // Scrubbed before the cache sees it; the error's message is scrubbed
        // where the outcome is built (`conclude`), with panics and timeouts.
        let res = res.map(|r| r.map(|r| r.map(|r| r.map(|out| ctx.scrub.value(out)))));
        let output = match &res {
            Some(Ok(Ok(Ok(output)))) => Some(output),
            _ => None,
        };
        if let Some(fill) = fill {
            Box::pin(fill.finish(ctx, output)).await;
        }
        let res = res?;
        let elapsed = clock.elapsed();
        self.tm.duration.record(elapsed.as_secs_f64());
        Some((res, elapsed))
    }

    /// The call's progress sink; a report is kept for the attempt's
    /// `timeout` plus the job's result TTL, so it expires with the job.
    fn progress(&self, timeout: Duration) -> CallProgress<'_> {
        let result_ttl_s = self
            .job
            .result_ttl_s
            .unwrap_or(self.ctx.config.result_ttl_s);
        let ttl = timeout.saturating_add(Duration::from_secs(result_ttl_s));
        CallProgress::new(
            &self.ctx,
            self.queue,
            self.slot,
            &self.id,
            self.job.attempt,
            ttl,
        )
    }

    /// Asks the acker to park the job in the delayed set until `due_ms` (by
    /// Redis's clock), carrying its id so identical jobs stay distinct.
    pub(super) async fn park(&self, due_ms: u64) -> Parking {
        let payload = job::rewrite_payload(
            &self.payload,
            &self.id,
            self.job.attempt,
            self.job.recoveries,
        )
        .unwrap_or_else(|_| String::from_utf8_lossy(&self.payload).into_owned());
        let (reply, answer) = oneshot::channel();
        let item = DeferItem {
            seq: self.slot,
            due_ms,
            payload,
        };
        let request = Outcome::new(self.queue, Settle::Defer { item, reply });
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Parking::Cancelled,
            sent = self.acker.send(request) => if sent.is_err() { return Parking::Parked },
        }
        tokio::select! {
            biased;
            // A park that lands anyway makes the put-back stale: fenced.
            _ = self.cancel.cancelled() => Parking::Cancelled,
            r = answer => match r {
                Ok(Deferred::DueNow) => Parking::DueNow,
                // Parked, taken over, or left held when the acker gave up
                // (the stop puts it back): either way not ours to run now.
                Ok(Deferred::Parked) | Err(_) => Parking::Parked,
            },
        }
    }

    /// The outcome to hand over; an ack takes the payload along (moved, not
    /// copied) in case the acker must bury the job instead.
    fn finish(mut self, mut settle: Settle) -> Outcome {
        if let Settle::Ack { payload, .. } = &mut settle {
            *payload = std::mem::take(&mut self.payload);
        }
        Outcome::new(self.queue, settle)
    }

    /// A call cut short by cancellation: back to pending, unless the tool
    /// must not run twice (the remote side may have done its work): then it
    /// is buried as `interrupted`, for an operator to decide. Either write is
    /// fenced by the slot, so a job already taken over is left alone.
    fn interrupted(self, tool: &dyn Tool) -> Outcome {
        if self.cancel.by_operator() {
            let settle = self.cancelled();
            return self.finish(settle);
        }
        if tool.redeliver() {
            return self.put_back();
        }
        let message = format!(
            "the call to `{}` was interrupted (the worker stopped or lost the job); it is not safe to run twice, so it was not run again (retry it with `toolq dead retry`)",
            self.job.tool
        );
        let settle = self.bury(error("interrupted", message), None);
        self.finish(settle)
    }

    /// Hands the job back to pending, unspent (fenced by its slot); a job
    /// an operator cancelled is settled as cancelled instead.
    fn put_back(&self) -> Outcome {
        if self.cancel.by_operator() {
            return Outcome::new(self.queue, self.cancelled());
        }
        Outcome::put_back(self.queue, self.slot)
    }
}
