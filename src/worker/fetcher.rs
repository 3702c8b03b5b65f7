//! The fetch loop: takes permits first (never fetches work it has no room
//! for), fetches as many jobs as it holds permits in one round trip per
//! queue, and hands each job with its permit to its own task. When every
//! queue is empty it waits for a waiter's wake-up instead of polling; the
//! round after a wake-up asks only the queues whose waiters saw a job land
//! (the others were empty, and their waiters would have said otherwise),
//! so a worker of 50 queues answers a push with one fetch, not 50.
//!
//! With a prefetch (`prefetch` jobs beyond the concurrency), a permit is a
//! place to hold a job, and a fetched job's task waits for a run slot of
//! its own: the next batch is fetched while this one runs, so Redis and the
//! worker work at once instead of taking turns. A job still waiting for a
//! slot when the stop begins never starts: it stays held, and the stop
//! puts it back with the others.
//!
//! A suspect (a job whose next worker death would bury it as poison) runs
//! alone: the fetch script hands it over on its own, the fetcher waits for
//! this worker's other jobs to finish and fetches nothing until it is done.
//! So a job that kills its worker is buried only once it did so by itself,
//! and innocent jobs that happened to run beside it are not buried with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, RwLock, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acker::AckSender;
use super::context::Ctx;
use super::executor::{self, Cancel, Taken};
use super::lifeline::Lifeline;
use super::outage::retry_delay;
use super::outcome::{Outcome, Settle};
use super::slots::RunSlots;
use super::waiter::Landed;
use crate::job::recoveries_of;
use crate::queue::{slot, FetchLimits, QueueError};

/// Longest idle wait without a wake-up before fetching from every queue
/// again anyway: a safety net only (the waiters wake the fetcher, and a
/// waiter that reconnects finds a job that landed meanwhile at once), so it
/// can be long; each costs one fetch per queue.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// Longest wait for more free permits before fetching under a backlog.
const TOP_UP_WAIT: Duration = Duration::from_millis(1);

pub struct Fetcher {
    pub ctx: Arc<Ctx>,
    pub permits: Arc<Semaphore>,
    /// One per job allowed to run at once, when jobs are prefetched (the
    /// permits then cover the concurrency plus the prefetch).
    pub run_slots: Option<Arc<RunSlots>>,
    pub acker: AckSender,
    pub tasks: TaskTracker,
    /// Signalled by a waiter when a job landed.
    pub wake: Arc<Notify>,
    /// True while the fetcher relies on the waiters (idle, or asking only
    /// the queues they named), so waiters block only then.
    pub idle: Arc<watch::Sender<bool>>,
    /// The queues whose waiters saw a job land.
    pub landed: Arc<Landed>,
    /// Shared by running jobs, held alone by a running suspect.
    pub solo: Arc<RwLock<()>>,
    /// Cancels running jobs at the end of the grace period.
    pub stop_jobs: CancellationToken,
}

/// A job taken from Redis, not started yet.
pub struct Fetched {
    pub taken: Taken,
    pub permit: OwnedSemaphorePermit,
    /// Its queue's lifeline when the fetch was sent: lost if this worker is
    /// declared dead on that queue from then on, since the job may then be
    /// someone else's.
    pub lifeline: Arc<Lifeline>,
}

impl Fetcher {
    /// Runs until `stop`; `delivered` brings the jobs the waiters fetched.
    pub async fn run(
        self,
        mut delivered: mpsc::UnboundedReceiver<Fetched>,
        stop: CancellationToken,
    ) {
        let solo = self.solo.clone();
        let mut failures = 0;
        let mut busy = false;
        // The queues to ask in the next round; `None`: all of them.
        let mut only: Option<Vec<usize>> = None;
        loop {
            let mut permits = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(job) = delivered.recv() => {
                    self.start(vec![job], &solo, &stop).await;
                    continue;
                }
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            self.top_up(&mut permits, busy).await;
            // Nothing is fetched while a suspect runs alone.
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                g = solo.read() => drop(g),
            }
            let mut jobs = Vec::new();
            let targeted = only.is_some();
            // Waiters watch every queue the round does not ask.
            self.idle
                .send_if_modified(|w| std::mem::replace(w, targeted) != targeted);
            let fetched = self
                .fetch_round(&mut permits, &mut jobs, &stop, only.take())
                .await;
            // A batch that used every permit means a backlog: the next round
            // waits a moment for more free permits.
            busy = permits.num_permits() == 0 && jobs.len() > 1;
            // Permits left over: the queues asked had no more jobs.
            let drained = permits.num_permits() > 0;
            drop(permits);
            let idle = jobs.is_empty();
            let gave: Vec<usize> = jobs.iter().map(|j| j.taken.queue).collect();
            if !idle {
                self.start(jobs, &solo, &stop).await;
            }
            self.landed.round_done();
            match fetched {
                Ok(()) => {
                    failures = 0;
                    // After a wake-up round that emptied its queues, the
                    // rest are still empty unless their waiters say so; one
                    // that did not: ask again those that gave jobs, and
                    // those whose waiters saw one land meanwhile.
                    if idle || (targeted && drained) {
                        only = self.idle_wait(&mut delivered, &solo, &stop).await;
                    } else if targeted {
                        let mut next = gave;
                        next.extend(self.landed.take());
                        next.sort_unstable();
                        next.dedup();
                        only = Some(next);
                    }
                }
                Err(QueueError::NotRegistered) => {
                    // Declared dead while paused, or Redis lost the worker
                    // sets: the heartbeat registers again, now.
                    self.ctx.beat_now.notify_one();
                    sleep_or_stop(Duration::from_millis(200), &stop).await;
                }
                Err(e) => {
                    self.ctx.outage.failed("fetch", &e);
                    sleep_or_stop(retry_delay(failures), &stop).await;
                    failures += 1;
                }
            }
        }
    }

    /// Adds free permits to the bundle, up to one batch. Under a backlog it
    /// waits up to [`TOP_UP_WAIT`] for the whole concurrency to be free, so
    /// each round trip carries many jobs instead of the one or two that
    /// finished a moment ago; that wait is nothing next to a real job.
    async fn top_up(&self, permits: &mut OwnedSemaphorePermit, busy: bool) {
        let batch = self.ctx.config.fetch_batch.max(1);
        if busy {
            let target = batch.min(self.ctx.config.concurrency.max(1));
            let more = target.saturating_sub(permits.num_permits());
            if more > 0 {
                let sem = self.permits.clone();
                if let Ok(Ok(p)) =
                    tokio::time::timeout(TOP_UP_WAIT, sem.acquire_many_owned(more as u32)).await
                {
                    permits.merge(p);
                }
            }
        }
        let free = self
            .permits
            .available_permits()
            .min(batch.saturating_sub(permits.num_permits()));
        if free > 0 {
            if let Ok(p) = self.permits.clone().try_acquire_many_owned(free as u32) {
                permits.merge(p);
            }
        }
    }

    /// One round over the queues in this round's order (only those of
    /// `only`, when given), into `jobs` (kept even when a later queue's
    /// fetch fails).
    async fn fetch_round(
        &self,
        permits: &mut OwnedSemaphorePermit,
        jobs: &mut Vec<Fetched>,
        stop: &CancellationToken,
        only: Option<Vec<usize>>,
    ) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        let limits = FetchLimits {
            solo_at: ctx.config.max_recoveries.max(1),
            max_bytes: ctx.limits.max_bytes,
            head_bytes: ctx.config.dead_max_payload_bytes,
        };
        for qi in ctx.queues.order() {
            if ctx.control.is_paused(qi) || only.as_ref().is_some_and(|o| !o.contains(&qi)) {
                continue;
            }
            let want = permits.num_permits();
            if want == 0 {
                break;
            }
            let batch = ctx.batch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Taken before the fetch: a loss of ownership noticed at any
            // moment after the fetch was sent cancels these jobs (a cancelled
            // job that was still ours is put back, fenced).
            let lifeline = ctx.control.lifeline(qi);
            let fetched = ctx
                .broker
                .fetch(&ctx.queues.keys[qi], &ctx.worker_id, want, batch, limits)
                .await;
            let payloads = match fetched {
                Ok(p) => p,
                Err(e) => {
                    if reply_lost(&e) {
                        put_back_batch(&self.acker, qi, batch, stop).await;
                    }
                    return Err(e);
                }
            };
            ctx.outage.ok();
            for (i, payload) in payloads.into_iter().enumerate() {
                let Some(permit) = permits.split(1) else {
                    break;
                };
                jobs.push(Fetched {
                    taken: Taken {
                        queue: qi,
                        slot: slot(batch, i),
                        payload,
                    },
                    permit,
                    lifeline: lifeline.clone(),
                });
            }
        }
        Ok(())
    }

    /// Starts ordinary jobs at once and suspects one at a time, each once
    /// every other job of this worker has finished.
    async fn start(&self, jobs: Vec<Fetched>, solo: &Arc<RwLock<()>>, stop: &CancellationToken) {
        let solo_at = self.ctx.config.max_recoveries.max(1);
        let (alone, shared): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|j| recoveries_of(&j.taken.payload) >= solo_at);
        for job in shared {
            let pass = solo.clone().read_owned().await;
            self.spawn_job(job, pass, stop);
        }
        for job in alone {
            tracing::info!(
                recoveries = recoveries_of(&job.taken.payload),
                "running a job that was on dead workers before alone"
            );
            let pass = tokio::select! {
                biased;
                // Still in the active hash: the stop sequence puts it back.
                _ = stop.cancelled() => return,
                g = solo.clone().write_owned() => g,
            };
            self.spawn_job(job, pass, stop);
        }
    }

    /// Runs `job` in its own task, holding `pass` (its share of, or all of,
    /// the solo lock) and its permit until its outcome is handed over. A
    /// prefetched job first waits for a run slot, unless fetching stops
    /// (`stop`) first: it is left held for the stop to put back.
    fn spawn_job<P: Send + 'static>(&self, job: Fetched, pass: P, stop: &CancellationToken) {
        let ctx = self.ctx.clone();
        // In line now, in fetch order (this runs once per job, in order).
        let in_line = self.run_slots.as_ref().map(|s| s.join());
        let stop = stop.clone();
        let acker = self.acker.clone();
        let cancel = Cancel {
            lifeline: job.lifeline,
            slot: job.taken.slot,
            stop: self.stop_jobs.clone(),
        };
        let Fetched { taken, permit, .. } = job;
        // Boxed: the job's future is large, and tokio would otherwise copy
        // it several times on the way into the task.
        self.tasks.spawn(Box::pin(async move {
            let slot = match in_line {
                Some(turn) => {
                    let waited = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        // Cancelled by an operator or lost with its lane
                        // while it waits: `execute` settles it without a
                        // call (as cancelled, or put back), so it needs no
                        // slot, and the cancel is not left to expire.
                        _ = cancel.cancelled() => None,
                        s = turn => match s {
                            Ok(s) => Some(s),
                            Err(_) => return,
                        },
                    };
                    if !alive(&ctx, &cancel, &stop).await {
                        return;
                    }
                    waited
                }
                None => None,
            };
            // `execute` watches the cancel tokens itself and unwinds (the
            // in-flight gauge and count go down there): dropping it from
            // outside would leak them.
            if let Some(outcome) = executor::execute(ctx, taken, acker.clone(), cancel).await {
                // Holding the permit until the acker took the outcome caps
                // finished-but-unwritten jobs when Redis is slow or down.
                let _ = acker.send(outcome).await;
            }
            drop(slot);
            drop(permit);
            drop(pass);
        }));
    }

    /// Waits for a waiter's wake-up, starting the jobs waiters fetched
    /// meanwhile; returns the queues that saw a job land, or `None` (ask
    /// every queue) after [`IDLE_POLL`] without one.
    async fn idle_wait(
        &self,
        delivered: &mut mpsc::UnboundedReceiver<Fetched>,
        solo: &Arc<RwLock<()>>,
        stop: &CancellationToken,
    ) -> Option<Vec<usize>> {
        self.idle.send_replace(true);
        let poll = tokio::time::sleep(IDLE_POLL);
        tokio::pin!(poll);
        loop {
            let woken = tokio::select! {
                _ = self.wake.notified() => true,
                Some(job) = delivered.recv() => {
                    self.start(vec![job], solo, stop).await;
                    continue;
                }
                _ = &mut poll => false,
                _ = stop.cancelled() => false,
            };
            let landed = self.landed.take();
            return (woken && !landed.is_empty()).then_some(landed);
        }
    }
}

/// A fetch whose reply was lost may have moved jobs into the active hash
/// that no task of ours runs: the acker puts back whatever that batch
/// holds once Redis answers (nothing, if the fetch never ran).
pub async fn put_back_batch(acker: &AckSender, qi: usize, batch: u64, stop: &CancellationToken) {
    let outcome = Outcome::new(qi, Settle::PutBackBatch { batch });
    tokio::select! {
        // Still held, if it ever was: the stop puts it back.
        _ = stop.cancelled() => {}
        _ = acker.send(outcome) => {}
    }
}

/// Whether a prefetched job may start: held since before a pause of this
/// process, it may have been recovered by another worker meanwhile, which
/// this worker learns only at its next heartbeat. Running jobs carry on
/// through such a pause (their lifeline stops them once it is lost), but a
/// job that has not started waits for a fresh heartbeat, which either
/// finds this worker still registered or loses the lane (then `execute`
/// leaves the job to its new owner). False when fetching stopped first:
/// the job stays held for the stop to put back.
async fn alive(ctx: &Ctx, cancel: &Cancel, stop: &CancellationToken) -> bool {
    let timeout = ctx.config.heartbeat_timeout();
    while ctx.health.heartbeat_age().is_some_and(|age| age >= timeout) && !cancel.is_stopped() {
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    !stop.is_cancelled()
}

/// Whether a failed fetch may have run in Redis with only its reply lost:
/// the request went out on a connection that then broke. A fetch that
/// found no connection never left this process.
pub fn reply_lost(e: &QueueError) -> bool {
    matches!(e, QueueError::Redis { source, .. } if crate::queue::is_connection_error(source))
}

pub async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fetch that found no connection never left this process: recording
    /// it (as earlier builds did, 1,024 slots per failed fetch, for every
    /// retry of an outage) only grows a list of nothing to put back.
    #[test]
    fn only_a_fetch_that_went_out_can_have_lost_its_reply() {
        let no_connection = QueueError::Unavailable {
            op: "connect",
            message: "connection refused".into(),
        };
        assert!(!reply_lost(&no_connection));
        let broken = QueueError::Redis {
            op: "fetch",
            source: redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        };
        assert!(reply_lost(&broken));
        let answered = QueueError::Redis {
            op: "fetch",
            source: redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                "ERR",
            )),
        };
        assert!(!reply_lost(&answered), "Redis answered: nothing ran");
        assert!(!reply_lost(&QueueError::NotRegistered));
    }
}
