//! The fetch loop: takes permits first (never fetches work it has no room
//! for), fetches as many jobs as it holds permits in one round trip per
//! queue, and hands each job with its permit to its own task. When every
//! queue is empty it waits for a waiter's wake-up instead of polling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acker::AckSender;
use super::context::Ctx;
use super::executor;
use super::outage::retry_delay;
use crate::queue::QueueError;

/// Longest idle wait without a wake-up before fetching again anyway.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Longest wait for more free permits before fetching under a backlog.
const TOP_UP_WAIT: Duration = Duration::from_millis(1);

pub struct Fetcher {
    pub ctx: Arc<Ctx>,
    pub permits: Arc<Semaphore>,
    pub acker: AckSender,
    pub tasks: TaskTracker,
    /// Signalled by a waiter when a job landed.
    pub wake: Arc<Notify>,
    /// True while the fetcher is idle, so waiters block only then.
    pub idle: Arc<watch::Sender<bool>>,
    /// Cancels running jobs at the end of the grace period.
    pub stop_jobs: CancellationToken,
}

impl Fetcher {
    pub async fn run(self, stop: CancellationToken) {
        let mut failures = 0;
        let mut busy = false;
        loop {
            let mut permits = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            self.top_up(&mut permits, busy).await;
            match self.fetch_round(&mut permits).await {
                Ok(0) => {
                    failures = 0;
                    busy = false;
                    drop(permits);
                    self.idle_wait(&stop).await;
                }
                Ok(started) => {
                    failures = 0;
                    // A batch came back full: there is a backlog, so the
                    // next round should wait for a few more free permits.
                    busy = permits.num_permits() == 0 && started > 1;
                }
                Err(QueueError::NotRegistered) => {
                    // Declared dead while paused; the heartbeat re-registers.
                    drop(permits);
                    sleep_or_stop(Duration::from_millis(200), &stop).await;
                }
                Err(e) => {
                    drop(permits);
                    self.ctx.outage.failed("fetch", &e);
                    sleep_or_stop(retry_delay(failures), &stop).await;
                    failures += 1;
                }
            }
        }
    }

    /// Adds free permits to the bundle, up to one batch. Under a backlog it
    /// waits up to [`TOP_UP_WAIT`] for half the concurrency to be free, so
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

    /// One round over the queues in this round's order; returns jobs started.
    async fn fetch_round(&self, permits: &mut OwnedSemaphorePermit) -> Result<usize, QueueError> {
        let ctx = &self.ctx;
        let mut started = 0;
        for qi in ctx.queues.order() {
            let want = permits.num_permits();
            if want == 0 {
                break;
            }
            let first_seq = ctx
                .seq
                .fetch_add(want as u64, std::sync::atomic::Ordering::Relaxed);
            let payloads = ctx
                .broker
                .fetch(&ctx.queues.keys[qi], &ctx.worker_id, want, first_seq)
                .await?;
            ctx.outage.ok();
            for (i, payload) in payloads.into_iter().enumerate() {
                let Some(permit) = permits.split(1) else {
                    break;
                };
                self.spawn_job(qi, first_seq + i as u64, payload, permit);
                started += 1;
            }
        }
        Ok(started)
    }

    fn spawn_job(&self, qi: usize, seq: u64, payload: Vec<u8>, permit: OwnedSemaphorePermit) {
        let ctx = self.ctx.clone();
        let acker = self.acker.clone();
        let generation = ctx.generation();
        let stop_jobs = self.stop_jobs.clone();
        // Boxed: the job's future is large, and tokio would otherwise copy
        // it several times on the way into the task.
        self.tasks.spawn(Box::pin(async move {
            let cancel = executor::Cancel {
                generation: &generation,
                stop: &stop_jobs,
            };
            if let Some(outcome) = executor::execute(&ctx, qi, seq, payload, cancel).await {
                // Holding the permit until the acker took the outcome caps
                // finished-but-unwritten jobs when Redis is slow or down.
                let _ = acker.send(outcome).await;
            }
            drop(permit);
        }));
    }

    async fn idle_wait(&self, stop: &CancellationToken) {
        self.idle.send_replace(true);
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = stop.cancelled() => {}
        }
        self.idle.send_replace(false);
    }
}

pub async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}
