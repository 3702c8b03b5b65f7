//! The stop sequence, in phases (as sidekiq's quiet, stop, requeue): stop
//! fetching at once; let running jobs finish within the grace period, then
//! interrupt them; write what finished (bounded while Redis is down); stop
//! the background loops and the heartbeat; put back what did not finish and
//! deregister, in one atomic step per queue. The order matters: see the
//! comments at each phase. A worker that stalls (Redis refusing to settle
//! its jobs) runs the same sequence.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::context::Ctx;
use super::Shutdown;
use crate::queue::Requeue;

/// Longest wait for running jobs to notice cancellation after the grace.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for outcomes to be written during a stop while Redis is down.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// What `run_registered` started, wound down by [`stop`] in order.
pub(super) struct Running {
    /// Stops the waiters and the fetcher.
    pub(super) fetch_stop: CancellationToken,
    pub(super) fetchers: Vec<JoinHandle<()>>,
    /// The running jobs' tasks.
    pub(super) tasks: TaskTracker,
    /// Interrupts running jobs once the grace period is over.
    pub(super) stop_jobs: CancellationToken,
    /// Tells the acker to stop waiting for Redis and drop what is left.
    pub(super) give_up: CancellationToken,
    pub(super) acker: JoinHandle<()>,
    /// Stops the reaper, scheduler, monitor and heartbeat.
    pub(super) loops_stop: CancellationToken,
    pub(super) loops: Vec<JoinHandle<()>>,
    pub(super) beat: std::thread::JoinHandle<()>,
}

/// Waits for `shutdown` to begin (or a stall, or a reshard), then runs the
/// stop sequence.
pub(super) async fn stop(ctx: &Ctx, shutdown: &Shutdown, running: Running) {
    let Running {
        fetch_stop,
        fetchers,
        tasks,
        stop_jobs,
        give_up,
        acker,
        loops_stop,
        loops,
        beat,
    } = running;
    // Phase 1, quiet: stop taking jobs at once.
    tokio::select! {
        _ = shutdown.begun() => {}
        _ = ctx.stalled.cancelled() => {}
        _ = ctx.reshard.cancelled() => {}
    }
    let grace = quiet(ctx, fetch_stop, fetchers).await;
    // Phase 2: let running jobs finish within the grace period.
    finish_jobs(ctx, shutdown, &tasks, &stop_jobs, grace).await;
    // Phase 3: write what finished, put back what did not, leave.
    flush(give_up, acker).await;
    // The loops stop before deregistering: a heartbeat after it would find
    // this worker gone, think it was declared dead, and register it again.
    loops_stop.cancel();
    for l in loops {
        let _ = l.await;
    }
    let _ = tokio::task::spawn_blocking(move || beat.join()).await;
    requeue_unfinished(ctx).await;
    let forgotten = match ctx.broker.forget_worker_info(&ctx.worker_id).await {
        Ok(()) => ctx.broker.withdraw_tools(&ctx.worker_id).await,
        Err(e) => Err(e),
    };
    if let Err(e) = forgotten {
        tracing::warn!(error = %e, "could not remove the registration documents; they expire on their own");
    }
    tracing::info!("worker stopped");
}

/// Stops fetching and waits for the fetchers; returns the grace period.
async fn quiet(
    ctx: &Ctx,
    fetch_stop: CancellationToken,
    fetchers: Vec<JoinHandle<()>>,
) -> Duration {
    ctx.health.set_shutting_down();
    let grace = ctx.config.shutdown_grace();
    tracing::info!(
        in_flight = ctx.health.in_flight(),
        grace_s = grace.as_secs(),
        "stopping: no new jobs"
    );
    fetch_stop.cancel();
    for f in fetchers {
        let _ = f.await;
    }
    grace
}

/// Waits for running jobs within `grace` (cut short by a forced stop),
/// then interrupts those still running and waits a little for them.
async fn finish_jobs(
    ctx: &Ctx,
    shutdown: &Shutdown,
    tasks: &TaskTracker,
    stop_jobs: &CancellationToken,
    grace: Duration,
) {
    tasks.close();
    let finished = tokio::select! {
        biased;
        _ = tasks.wait() => true,
        _ = tokio::time::sleep(grace) => false,
        _ = shutdown.forced() => false,
    };
    if !finished {
        tracing::warn!(
            in_flight = ctx.health.in_flight(),
            "grace period over: interrupting running jobs"
        );
        stop_jobs.cancel();
        let _ = tokio::time::timeout(CANCEL_WAIT, tasks.wait()).await;
    }
}

/// Waits for the acker to write what finished, giving up on Redis after
/// `FLUSH_WAIT`.
async fn flush(give_up: CancellationToken, acker: JoinHandle<()>) {
    let give_up_later = give_up.clone();
    let flush_deadline = tokio::spawn(async move {
        tokio::time::sleep(FLUSH_WAIT).await;
        give_up_later.cancel();
    });
    // Bounded even if a tool stuck in a blocking call still holds a sender:
    // its job stays in the active hash and is put back below.
    if tokio::time::timeout(FLUSH_WAIT + CANCEL_WAIT, acker)
        .await
        .is_err()
    {
        tracing::warn!("some outcomes were not written in time; their jobs go back to pending");
    }
    flush_deadline.abort();
}

/// Puts back every job still held and leaves each queue's worker set, in
/// one step per queue: if it fails, the worker stays registered with its
/// jobs held, and recovery takes them once its heartbeat is stale.
async fn requeue_unfinished(ctx: &Ctx) {
    for keys in &ctx.queues.keys {
        for attempt in 0..3 {
            match ctx
                .broker
                .requeue(keys, &ctx.worker_id, Requeue::Stop)
                .await
            {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(queue = %keys.name, jobs = n, "put unfinished jobs back");
                    }
                    break;
                }
                Err(e) if attempt == 2 => {
                    tracing::warn!(queue = %keys.name, error = %e,
                        "could not put unfinished jobs back; they will be recovered when this worker's heartbeat expires");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}
