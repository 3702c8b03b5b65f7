//! The scheduler: promotes due jobs (retries and scheduled jobs) from
//! `delayed` to `pending`. Every worker runs one; the promote script is
//! atomic, so racing workers never move a job twice.
//!
//! A lane whose delayed set holds jobs is looked at again when its first
//! one comes due; one found empty only every [`SLOW_POLL`], unless told
//! that it has a new earliest job, which is looked at at once: by the
//! acker, through [`Delayed`], when this worker delays a job there itself
//! (a retry, a parked job), and by the wake-up listener when anyone does
//! (a producer's scheduled job, another worker's retry; the scripts that
//! add to a delayed set publish when the job is its new earliest). So an
//! idle lane costs one promote script per [`SLOW_POLL`], and a scheduled
//! job starts on time. While the wake-up subscription is down, lanes are
//! polled as before it: an empty one every [`EMPTY_SLEEP`], one holding
//! jobs at least every [`MAX_SLEEP`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;
use super::wake::SLOW_POLL;

/// Most jobs promoted per call: keeps each script call short.
const BATCH: usize = 1000;
/// Longest sleep between checks of a lane holding delayed jobs while the
/// wake-up subscription is down, so newly delayed jobs are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(500);
const MIN_SLEEP: Duration = Duration::from_millis(5);
/// How often a lane whose delayed set was empty is looked at again while
/// the wake-up subscription is down.
pub const EMPTY_SLEEP: Duration = Duration::from_secs(1);

pub struct Scheduler {
    pub ctx: Arc<Ctx>,
}

/// Lanes where this worker just delayed a job, for the scheduler to look
/// at without waiting for the lane's next turn.
pub struct Delayed {
    marks: Vec<AtomicBool>,
    wake: Notify,
}

impl Delayed {
    pub fn new(lanes: usize) -> Self {
        Delayed {
            marks: (0..lanes).map(|_| AtomicBool::new(false)).collect(),
            wake: Notify::new(),
        }
    }

    /// This worker put a job in lane `qi`'s delayed set.
    pub fn mark(&self, qi: usize) {
        if let Some(m) = self.marks.get(qi) {
            m.store(true, Ordering::Release);
            self.wake.notify_one();
        }
    }

    fn take(&self, qi: usize) -> bool {
        self.marks[qi].swap(false, Ordering::AcqRel)
    }
}

impl Scheduler {
    pub async fn run(self, stop: CancellationToken) {
        let ctx = &self.ctx;
        let mut failures = 0;
        // When each lane is to be looked at next.
        let mut due = vec![Instant::now(); ctx.queues.len()];
        while !stop.is_cancelled() {
            let now = Instant::now();
            for (qi, keys) in ctx.queues.keys.iter().enumerate() {
                if due[qi] > now && !ctx.delayed.take(qi) {
                    continue;
                }
                match ctx.broker.promote(keys, BATCH).await {
                    Ok((moved, next)) => {
                        failures = 0;
                        let live = ctx.wake.is_live();
                        let longest = if live { SLOW_POLL } else { MAX_SLEEP };
                        due[qi] = now
                            + match next {
                                _ if moved as usize >= BATCH => Duration::ZERO,
                                Some(next) => next.clamp(MIN_SLEEP, longest),
                                None => ctx.wake.poll(EMPTY_SLEEP),
                            };
                    }
                    Err(e) => {
                        ctx.outage.failed("promote", &e);
                        due[qi] = now + retry_delay(failures);
                        failures += 1;
                    }
                }
            }
            let next = due.iter().min().copied().unwrap_or(now + MAX_SLEEP);
            let sleep = next.saturating_duration_since(Instant::now());
            if !sleep.is_zero() {
                tokio::select! {
                    _ = sleep_or_stop(sleep, &stop) => {}
                    _ = ctx.delayed.wake.notified() => {}
                }
            }
        }
    }
}
