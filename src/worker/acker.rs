//! The one component that writes job outcomes: acks, retries, burials,
//! parkings and put-backs all come here as [`Outcome`]s, and are written in
//! batches with few calls in flight, so one round trip settles many jobs.
//! Metrics are counted here, once a write is known to have landed and not to
//! have been stale.
//!
//! Two kinds of failure, two answers:
//! - Redis unreachable: outcomes wait here (the channel is bounded, so
//!   fetching stops too) and are written when it returns, never lost or run
//!   again.
//! - Redis answers with an error (`NOPERM`, `OOM`, a key of the wrong type,
//!   a script error): retried a few times, then the worker stalls visibly
//!   (error log, `toolq_settle_refused_total`, `/readyz` 503) and stops; the
//!   jobs it could not settle stay held and are put back or recovered.

use std::future::Future;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::job_metrics::ToolMetrics;
use super::outage::retry_delay;
use super::outcome::{bury_unwritable, Deferred, Outcome, Settle};
use crate::health::metrics::{SETTLE_REFUSED, STALE_ACKS};
use crate::queue::{AckItem, QueueError, Requeue};

/// Ack calls in flight at once. One: while it runs, the next batch fills up,
/// so each call carries more jobs (measured: 1 in flight drained 15% faster
/// than 2, and 2 than 4, with fewer and larger calls).
const MAX_IN_FLIGHT: usize = 1;

/// Answered errors in a row before the worker stalls: enough to ride out a
/// transient refusal (a script cache flushed mid-call, a failover's
/// read-only moment), few enough that a wedged worker shows within seconds.
const MAX_REFUSALS: u32 = 5;

pub type AckSender = mpsc::Sender<Outcome>;

pub struct Acker {
    ctx: Arc<Ctx>,
    rx: mpsc::Receiver<Outcome>,
}

impl Acker {
    /// The acker and the sender job tasks hand their outcomes to. The
    /// channel's capacity caps finished-but-unwritten jobs.
    pub fn new(ctx: Arc<Ctx>) -> (Acker, AckSender) {
        let capacity = ctx.config.concurrency.max(ctx.config.ack_batch) * 2;
        let (tx, rx) = mpsc::channel(capacity);
        (Acker { ctx, rx }, tx)
    }

    /// Runs until every sender is gone and everything received is written,
    /// or `give_up` fires (then unwritten jobs stay in the active hash and are
    /// put back or recovered later: at-least-once still holds).
    pub async fn run(mut self, give_up: CancellationToken) {
        let mut in_flight = FuturesUnordered::new();
        loop {
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                msg = self.rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                    let Some(first) = msg else { break };
                    let mut batch = vec![first];
                    while batch.len() < self.ctx.config.ack_batch {
                        match self.rx.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(_) => break,
                        }
                    }
                    let writer = Writer { ctx: self.ctx.clone(), give_up: give_up.clone() };
                    in_flight.push(writer.flush(batch));
                }
            }
        }
        while in_flight.next().await.is_some() {}
    }
}

/// Succeeded jobs of one queue, written by one ack call.
#[derive(Default)]
struct Acks {
    items: Vec<AckItem>,
    payloads: Vec<Vec<u8>>,
    tms: Vec<Arc<ToolMetrics>>,
}

struct Writer {
    ctx: Arc<Ctx>,
    give_up: CancellationToken,
}

impl Writer {
    async fn flush(self, batch: Vec<Outcome>) {
        let ctx = &self.ctx;
        let mut acks: Vec<Acks> = (0..ctx.queues.len()).map(|_| Acks::default()).collect();
        let mut put_back: Vec<Vec<u64>> = vec![Vec::new(); ctx.queues.len()];
        let mut others = Vec::new();
        for outcome in batch {
            let qi = outcome.queue;
            match outcome.settle {
                Settle::Ack { item, payload, tm } => {
                    acks[qi].items.push(item);
                    acks[qi].payloads.push(payload);
                    acks[qi].tms.push(tm);
                }
                Settle::PutBack { slot } => put_back[qi].push(slot),
                settle => others.push((qi, settle)),
            }
        }
        for (qi, a) in acks.into_iter().enumerate() {
            if !a.items.is_empty() {
                others.extend(self.ack(qi, a).await);
            }
        }
        for (qi, settle) in others {
            self.write_one(qi, settle).await;
        }
        for (qi, slots) in put_back.iter().enumerate() {
            if !slots.is_empty() {
                self.requeue(qi, Requeue::Slots(slots)).await;
            }
        }
    }

    /// Writes one queue's acks; returns burials for jobs whose own key
    /// could not be written.
    async fn ack(&self, qi: usize, a: Acks) -> Vec<(usize, Settle)> {
        let ctx = &self.ctx;
        let keys = &ctx.queues.keys[qi];
        let worker = ctx.worker_id.as_str();
        let Some((reply, retried)) = self
            .persist(qi, "ack", || ctx.broker.ack(keys, worker, &a.items))
            .await
        else {
            return Vec::new();
        };
        let mut written = vec![true; a.items.len()];
        let mut burials = Vec::new();
        for &i in &reply.stale {
            written[i] = false;
        }
        for (i, why) in reply.unwritable {
            written[i] = false;
            let settle = bury_unwritable(ctx, qi, &a.items[i], &a.payloads[i], why);
            burials.push((qi, settle));
        }
        for (tm, _) in a.tms.iter().zip(&written).filter(|(_, w)| **w) {
            tm.succeeded.increment(1);
        }
        count_stale(ctx, qi, reply.stale.len(), retried);
        burials
    }

    async fn write_one(&self, qi: usize, settle: Settle) {
        let ctx = &self.ctx;
        let keys = &ctx.queues.keys[qi];
        let worker = ctx.worker_id.as_str();
        match settle {
            Settle::Retry { item, tm } => {
                let written = self
                    .persist(qi, "retry", || ctx.broker.retry(keys, worker, &item))
                    .await;
                if let Some((ours, retried)) = written {
                    if ours {
                        ctx.delayed.mark(qi);
                        tm.retried.increment(1);
                        tm.retries.increment(1);
                    }
                    count_stale(ctx, qi, usize::from(!ours), retried);
                }
            }
            Settle::Bury { item, tm } => {
                let caps = ctx.dead_caps();
                let written = self
                    .persist(qi, "bury", || ctx.broker.bury(keys, worker, &item, caps))
                    .await;
                if let Some((buried, retried)) = written {
                    if let Some((skipped, trimmed)) = &buried {
                        if *trimmed > 0 {
                            tracing::debug!(queue = %keys.name, trimmed,
                                "dropped the oldest dead entries to keep the dead set within its caps");
                        }
                        if item.cancelled {
                            tm.cancelled.increment(1);
                        } else {
                            tm.dead.increment(1);
                            tm.dead_total.increment(1);
                        }
                        if !skipped.is_empty() {
                            tracing::warn!(queue = %keys.name, job_id = ?item.id, reason = %skipped,
                                "buried a job without writing a key of its own");
                        }
                    }
                    count_stale(ctx, qi, usize::from(buried.is_none()), retried);
                }
            }
            Settle::Defer { item, reply } => {
                let parked = self
                    .persist(qi, "defer", || ctx.broker.defer(keys, worker, &item))
                    .await;
                // No answer (dropped sender) when the write was abandoned: the
                // job stays held for the stop or recovery to put back.
                if let Some((parked, _)) = parked {
                    ctx.delayed.mark(qi);
                    let answer = match parked {
                        Some(false) => Deferred::DueNow,
                        Some(true) | None => Deferred::Parked,
                    };
                    let _ = reply.send(answer);
                }
            }
            Settle::PutBackBatch { batch } => {
                self.requeue(qi, Requeue::Batches(&[batch])).await;
            }
            Settle::Ack { .. } | Settle::PutBack { .. } => {}
        }
    }

    async fn requeue(&self, qi: usize, what: Requeue<'_>) {
        let ctx = &self.ctx;
        let keys = &ctx.queues.keys[qi];
        let back = self
            .persist(qi, "requeue", || {
                ctx.broker.requeue(keys, &ctx.worker_id, what)
            })
            .await;
        if let Some((n, _)) = back.filter(|(n, _)| *n > 0) {
            match what {
                Requeue::Batches(_) => tracing::info!(queue = %keys.name, jobs = n,
                    "put back jobs fetched but not started (a fetch reply lost, or a job landed when no slot was free)"),
                _ => tracing::info!(queue = %keys.name, jobs = n, "put unfinished jobs back"),
            }
        }
    }

    /// Retries a write while Redis is unreachable, until it succeeds or
    /// `give_up` fires; an error Redis answers with is retried at most
    /// [`MAX_REFUSALS`] times, then the worker stalls. `Some` with the value,
    /// and whether it took more than one try.
    async fn persist<T, F, Fut>(
        &self,
        qi: usize,
        op: &'static str,
        mut write: F,
    ) -> Option<(T, bool)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let ctx = &self.ctx;
        let (mut failures, mut refusals) = (0, 0);
        loop {
            let e = match write().await {
                Ok(v) => {
                    ctx.outage.ok();
                    return Some((v, failures > 0));
                }
                Err(e) => e,
            };
            ctx.outage.failed(op, &e);
            if !e.is_unavailable() {
                refusals += 1;
                metrics::counter!(SETTLE_REFUSED, "queue" => ctx.queues.keys[qi].name.clone())
                    .increment(1);
                if refusals >= MAX_REFUSALS || ctx.stalled.is_cancelled() {
                    tracing::error!(op, error = %e, refusals,
                        "redis keeps refusing to settle jobs; stopping this worker (its unsettled jobs stay held, to be put back or recovered)");
                    ctx.stall(e.to_string());
                    return None;
                }
            }
            tokio::select! {
                _ = self.give_up.cancelled() => {
                    tracing::warn!(error = %e, "giving up writing an outcome; the job stays active and will be recovered");
                    return None;
                }
                _ = tokio::time::sleep(retry_delay(failures)) => {}
            }
            failures += 1;
        }
    }
}

/// After a retried write, "no longer ours" usually means the first try was
/// applied and only its reply was lost (Redis went away mid-call), so it is
/// not counted as fencing; it could also mean the jobs were taken over while
/// Redis was out of reach, which the log line says too.
fn count_stale(ctx: &Ctx, qi: usize, n: usize, retried: bool) {
    if n > 0 && retried {
        tracing::info!(queue = %ctx.queues.keys[qi].name, jobs = n,
            "outcomes already settled: by an earlier try whose reply was lost, or by a worker that took the jobs over");
    } else if n > 0 {
        tracing::warn!(queue = %ctx.queues.keys[qi].name, stale = n,
            "dropped outcomes of jobs another worker took over");
        metrics::counter!(STALE_ACKS, "queue" => ctx.queues.keys[qi].name.clone())
            .increment(n as u64);
    }
}
