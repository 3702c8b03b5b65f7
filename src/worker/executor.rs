//! Runs one fetched job in its own task: parse it, look up its tool, and
//! hand it to its [`Attempt`], which turns whatever happens (success, error,
//! timeout, panic, cancellation) into one [`Outcome`] for the acker. Nothing
//! a payload or a tool does can take the worker down.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::acker::AckSender;
use super::attempt::Attempt;
use super::context::Ctx;
use super::job_metrics::UNKNOWN_TOOL_LABEL;
use super::lifeline::Lifeline;
use super::outcome::{bury_invalid, Outcome, Settle};
use crate::job;

/// Tool label for payloads that were not a valid job.
pub const INVALID_TOOL_LABEL: &str = "_invalid";

/// A job taken from Redis: where it is held and what it says.
pub struct Taken {
    pub queue: usize,
    /// Its slot in this worker's active hash (`queue::slot`).
    pub slot: u64,
    pub payload: Vec<u8>,
}

/// Why a running job may have to stop early.
#[derive(Clone)]
pub struct Cancel {
    /// Its queue's lifeline when it was fetched: lost when this worker was
    /// declared dead on the queue (the job may be someone else's now), and
    /// where an operator's cancel of this job arrives.
    pub lifeline: Arc<Lifeline>,
    /// The job's slot, which a cancel names.
    pub slot: u64,
    /// Fires at the end of the shutdown grace period.
    pub stop: CancellationToken,
}

impl Cancel {
    pub(super) async fn cancelled(&self) {
        tokio::select! {
            _ = self.lifeline.interrupted(self.slot) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Lost or stopping: the job goes back (or is left for its new owner).
    /// An operator's cancel is not here: the attempt settles that one.
    pub(super) fn is_stopped(&self) -> bool {
        self.lifeline.is_lost() || self.stop.is_cancelled()
    }

    /// An operator's cancel, and the job still ours to settle.
    pub(super) fn by_operator(&self) -> bool {
        self.lifeline.is_cancelled(self.slot) && !self.lifeline.is_lost()
    }
}

/// Runs `taken` to its outcome. `None` when there is nothing left to write:
/// the job was parked in the delayed set, or its outcome could not be
/// settled and it stays held (put back at stop, or recovered).
pub async fn execute(
    ctx: Arc<Ctx>,
    taken: Taken,
    acker: AckSender,
    cancel: Cancel,
) -> Option<Outcome> {
    if cancel.is_stopped() {
        // Fetched just as its queue was taken over (or the stop began): put
        // back, fenced, so a job still ours is not stranded.
        return Some(Outcome::put_back(taken.queue, taken.slot));
    }
    if let Some(o) = crate::queue::Oversized::decode(&taken.payload) {
        return Some(super::oversized::bury_oversized(&ctx, &taken, &o));
    }
    let job = match job::parse(&taken.payload, ctx.limits) {
        Ok(job) => job,
        Err(e) => return Some(bury_invalid(&ctx, &taken, e.kind(), e.to_string())),
    };
    let id = job
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let span = tracing::info_span!("job", job_id = %id, tool = %job.tool,
        queue = %ctx.queues.keys[taken.queue].name, attempt = job.attempt);
    let tm = match ctx.registry.get(&job.tool) {
        Some(_) => ctx.metrics.tool(taken.queue, &job.tool),
        None => ctx.metrics.tool(taken.queue, UNKNOWN_TOOL_LABEL),
    };
    let attempt = Attempt {
        tool: ctx.registry.get(&job.tool).cloned(),
        ctx,
        queue: taken.queue,
        slot: taken.slot,
        payload: taken.payload,
        job,
        id,
        tm,
        acker,
        cancel,
    };
    attempt.run().instrument(span).await
}

impl Outcome {
    pub(super) fn new(queue: usize, settle: Settle) -> Self {
        Outcome { queue, settle }
    }

    pub(super) fn put_back(queue: usize, slot: u64) -> Self {
        Outcome::new(queue, Settle::PutBack { slot })
    }
}

pub(super) fn unknown_tool_message(ctx: &Ctx, tool: &str) -> String {
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
