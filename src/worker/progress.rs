//! A call's progress reports, from its tool to Redis. The tool's report
//! only stores the latest value and wakes a writer task, so it never
//! blocks; the writer stores at most one report per [`PROGRESS_INTERVAL`]
//! (the latest, coalescing the rest), and when the call ends it stores the
//! last one before the job is settled. Every write is fenced by the job's
//! slot (`queue/scripts/progress.lua`): a job this worker no longer holds
//! gets nothing. Messages are scrubbed of secrets like outputs.
//!
//! A call that never reports costs nothing: the writer and its state are
//! made on the first report.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::context::Ctx;
use crate::queue::ProgressReport;
use crate::tools::ProgressSink;

/// Shortest time between two progress writes of one job.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait for the last report's write when a call ends: a slow
/// Redis delays the job's settling by no more than this.
const FINAL_WRITE_WAIT: Duration = Duration::from_secs(2);

/// The progress sink of one call: lives for the call, on its task's stack.
pub(super) struct CallProgress<'a> {
    ctx: &'a Arc<Ctx>,
    queue: usize,
    slot: u64,
    id: &'a str,
    attempt: u32,
    ttl: Duration,
    writer: OnceLock<Writer>,
}

struct Writer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    latest: Mutex<Latest>,
    /// A report arrived.
    wake: Notify,
    /// The call ended: write the last report now, then stop.
    end: Notify,
}

#[derive(Default)]
struct Latest {
    fraction: f64,
    /// Kept across reports, so a report reuses its buffer.
    message: String,
    unwritten: bool,
    ended: bool,
}

impl<'a> CallProgress<'a> {
    /// `ttl`: how long a report is kept (the attempt's timeout plus the
    /// job's result TTL, so it expires with the job).
    pub(super) fn new(
        ctx: &'a Arc<Ctx>,
        queue: usize,
        slot: u64,
        id: &'a str,
        attempt: u32,
        ttl: Duration,
    ) -> Self {
        CallProgress {
            ctx,
            queue,
            slot,
            id,
            attempt,
            ttl,
            writer: OnceLock::new(),
        }
    }

    /// After the call: stores the last report, if one is unwritten (waiting
    /// at most [`FINAL_WRITE_WAIT`]).
    pub(super) async fn finish(self) {
        let Some(writer) = self.writer.into_inner() else {
            return;
        };
        if let Ok(mut latest) = writer.shared.latest.lock() {
            latest.ended = true;
        }
        writer.shared.end.notify_one();
        writer.shared.wake.notify_one();
        let task = writer.task;
        let abort = task.abort_handle();
        if tokio::time::timeout(FINAL_WRITE_WAIT, task).await.is_err() {
            abort.abort();
        }
    }

    fn start(&self) -> Writer {
        let shared = Arc::new(Shared::default());
        let target = Target {
            ctx: self.ctx.clone(),
            queue: self.queue,
            slot: self.slot,
            id: self.id.to_owned(),
            attempt: self.attempt,
            ttl: self.ttl,
        };
        let task = tokio::spawn(write_loop(shared.clone(), target));
        Writer { shared, task }
    }
}

impl ProgressSink for CallProgress<'_> {
    fn report(&self, fraction: f64, message: &str) {
        let writer = self.writer.get_or_init(|| self.start());
        if let Ok(mut latest) = writer.shared.latest.lock() {
            latest.fraction = fraction;
            latest.message.clear();
            latest.message.push_str(message);
            latest.unwritten = true;
        }
        writer.shared.wake.notify_one();
    }
}

/// Where the writer stores reports.
struct Target {
    ctx: Arc<Ctx>,
    queue: usize,
    slot: u64,
    id: String,
    attempt: u32,
    ttl: Duration,
}

/// Writes the latest report, then rests [`PROGRESS_INTERVAL`] (cut short
/// when the call ends), until the call ended and nothing is unwritten.
async fn write_loop(shared: Arc<Shared>, target: Target) {
    let mut message = String::new();
    loop {
        let (fraction, ended) = {
            let Ok(mut latest) = shared.latest.lock() else {
                return;
            };
            let unwritten = std::mem::take(&mut latest.unwritten);
            if unwritten {
                std::mem::swap(&mut message, &mut latest.message);
            }
            (unwritten.then_some(latest.fraction), latest.ended)
        };
        match fraction {
            Some(fraction) => {
                if !target.write(fraction, &message).await {
                    // Not ours any more: later reports would not land either.
                    return;
                }
                if !ended {
                    tokio::select! {
                        _ = tokio::time::sleep(PROGRESS_INTERVAL) => {}
                        _ = shared.end.notified() => {}
                    }
                }
            }
            None if ended => return,
            None => shared.wake.notified().await,
        }
    }
}

impl Target {
    /// False when the job is no longer held here. A Redis error is logged
    /// and the next report tried: progress is never worth failing a job.
    async fn write(&self, fraction: f64, message: &str) -> bool {
        let keys = &self.ctx.queues.keys[self.queue];
        // A tool may echo a key it was configured with, as in its output.
        let message = match self.ctx.scrub.is_empty() {
            true => std::borrow::Cow::Borrowed(message),
            false => std::borrow::Cow::Owned(self.ctx.scrub.text(message.to_owned())),
        };
        let report = ProgressReport {
            slot: self.slot,
            id: &self.id,
            fraction,
            message: &message,
            attempt: self.attempt,
            ttl: self.ttl,
        };
        match self
            .ctx
            .broker
            .write_progress(keys, &self.ctx.worker_id, &report)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(error = %e, job_id = %self.id, "progress not stored");
                true
            }
        }
    }
}
