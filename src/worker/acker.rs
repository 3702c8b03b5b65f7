//! Writes job outcomes back to Redis in batches, with a few calls in flight,
//! so one round trip settles many jobs. When Redis is down, outcomes wait
//! here (the channel is bounded, so fetching stops too) and are written when
//! it returns, rather than lost or run again.

use std::future::Future;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::outage::retry_delay;
use super::outcome::Outcome;
use crate::health::metrics::STALE_ACKS;
use crate::queue::{AckItem, QueueError};

/// Ack calls in flight at once. One: while it runs, the next batch fills up,
/// so each call carries more jobs (measured: 1 in flight drained 15% faster
/// than 2, and 2 than 4, with fewer and larger calls).
const MAX_IN_FLIGHT: usize = 1;

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
    /// recovered later: at-least-once still holds).
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
                    in_flight.push(flush(self.ctx.clone(), batch, give_up.clone()));
                }
            }
        }
        while in_flight.next().await.is_some() {}
    }
}

async fn flush(ctx: Arc<Ctx>, batch: Vec<Outcome>, give_up: CancellationToken) {
    let mut acks: Vec<Vec<AckItem>> = vec![Vec::new(); ctx.queues.len()];
    let mut others = Vec::new();
    for outcome in batch {
        match outcome {
            Outcome::Ack { queue, item } => acks[queue].push(item),
            other => others.push(other),
        }
    }
    let worker = ctx.worker_id.as_str();
    for (qi, items) in acks.iter().enumerate().filter(|(_, i)| !i.is_empty()) {
        let keys = &ctx.queues.keys[qi];
        if let Some((stale, retried)) =
            persist(&ctx, &give_up, || ctx.broker.ack(keys, worker, items)).await
        {
            count_stale(&ctx, qi, stale.len(), retried);
        }
    }
    for outcome in others {
        let (qi, written) = match &outcome {
            Outcome::Retry { queue, item } => {
                let keys = &ctx.queues.keys[*queue];
                (
                    *queue,
                    persist(&ctx, &give_up, || ctx.broker.retry(keys, worker, item)).await,
                )
            }
            Outcome::Bury { queue, item } => {
                let keys = &ctx.queues.keys[*queue];
                let (max, age) = (ctx.config.dead_max_jobs, ctx.config.dead_max_age());
                (
                    *queue,
                    persist(&ctx, &give_up, || {
                        ctx.broker.bury(keys, worker, item, max, age)
                    })
                    .await,
                )
            }
            Outcome::Ack { .. } => continue,
        };
        if let Some((false, retried)) = written {
            count_stale(&ctx, qi, 1, retried);
        }
    }
}

/// Retries a write until it succeeds or `give_up` fires; true with the value
/// when it took more than one try.
async fn persist<T, F, Fut>(
    ctx: &Ctx,
    give_up: &CancellationToken,
    mut write: F,
) -> Option<(T, bool)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let mut failures = 0;
    loop {
        match write().await {
            Ok(v) => {
                ctx.outage.ok();
                return Some((v, failures > 0));
            }
            Err(e) => {
                ctx.outage.failed("ack", &e);
                tokio::select! {
                    _ = give_up.cancelled() => {
                        tracing::warn!(error = %e, "giving up writing an outcome; the job stays active and will be recovered");
                        return None;
                    }
                    _ = tokio::time::sleep(retry_delay(failures)) => {}
                }
                failures += 1;
            }
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
