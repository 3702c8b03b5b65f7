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
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < self.ctx.config.fetch_batch {
                match self.permits.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            match self.fetch_round(&mut permits).await {
                Ok(0) => {
                    failures = 0;
                    drop(permits);
                    self.idle_wait(&stop).await;
                }
                Ok(_) => failures = 0,
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

    /// One round over the queues in this round's order; returns jobs started.
    async fn fetch_round(
        &self,
        permits: &mut Vec<OwnedSemaphorePermit>,
    ) -> Result<usize, QueueError> {
        let ctx = &self.ctx;
        let mut started = 0;
        for qi in ctx.queues.order() {
            if permits.is_empty() {
                break;
            }
            let want = permits.len();
            let first_seq = ctx
                .seq
                .fetch_add(want as u64, std::sync::atomic::Ordering::Relaxed);
            let payloads = ctx
                .broker
                .fetch(&ctx.queues.keys[qi], &ctx.worker_id, want, first_seq)
                .await?;
            ctx.outage.ok();
            for (i, payload) in payloads.into_iter().enumerate() {
                let Some(permit) = permits.pop() else { break };
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
        self.tasks.spawn(async move {
            let cancel = CancellationToken::new();
            let guard = cancel.clone();
            let watch = async {
                tokio::select! {
                    _ = generation.cancelled() => {}
                    _ = stop_jobs.cancelled() => {}
                }
                guard.cancel();
            };
            let outcome = tokio::select! {
                biased;
                o = executor::execute(&ctx, qi, seq, payload, &cancel) => o,
                _ = watch => None,
            };
            if let Some(outcome) = outcome {
                // Holding the permit until the acker took the outcome caps
                // finished-but-unwritten jobs when Redis is slow or down.
                let _ = acker.send(outcome).await;
            }
            drop(permit);
        });
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
