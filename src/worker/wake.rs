//! The wake-up listener: one subscription per worker, whatever the number
//! of queues, to the channel on which producers, operators and other
//! workers say that an idle lane has something to do (see `queue::wake`).
//! It hands each message to the loop it concerns: a delayed set's new
//! earliest job to the scheduler (which then sleeps until that job is due),
//! a schedule's new tick to the periodic loop, a pause, resume or reshard to
//! the heartbeat's read of the flags. So those loops poll an idle lane only
//! every [`SLOW_POLL`], not every second.
//!
//! Pub/sub is at most once, so every (re)subscription wakes every lane, and
//! while the subscription is down the loops poll as often as before. The
//! connection is pinged every [`PING_EVERY`]: one cut without a word would
//! otherwise stay silent for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;
use super::queues::QueueSet;
use crate::queue::Signal;

/// How often an idle lane is looked at while the subscription is up: a
/// safety net for lost messages and for writers that do not publish (older
/// builds, a Redis user without rights to the channel).
pub const SLOW_POLL: Duration = Duration::from_secs(30);
/// How often the subscription is pinged: a connection cut without a word
/// (a partitioned node, a master failed over) is found within this plus
/// the response timeout, not a [`SLOW_POLL`] later.
const PING_EVERY: Duration = Duration::from_secs(5);

/// What the listener tells the other loops.
pub struct WakeUps {
    /// Delayed set key to lane.
    delayed: HashMap<String, usize>,
    /// Schedules set key (shard 0 of each queue).
    schedules: HashMap<String, usize>,
    /// Paused flag and shard layout keys of each served queue.
    flags: HashMap<String, usize>,
    /// Whether the subscription is up (the loops may then poll slowly).
    live: AtomicBool,
    /// A schedule changed: the periodic loop reads the schedules again.
    pub schedules_changed: Notify,
    /// A queue was paused, resumed or resharded: the heartbeat reads the
    /// flags and layouts now.
    pub flags_changed: Notify,
}

impl WakeUps {
    pub fn new(queues: &QueueSet) -> Self {
        let mut delayed = HashMap::new();
        let mut schedules = HashMap::new();
        let mut flags = HashMap::new();
        for (qi, k) in queues.keys.iter().enumerate() {
            delayed.insert(k.delayed.clone(), qi);
            if k.shard == 0 {
                schedules.insert(k.schedules_due(), qi);
                flags.insert(k.paused.clone(), qi);
                flags.insert(k.shards(), qi);
            }
        }
        WakeUps {
            delayed,
            schedules,
            flags,
            live: AtomicBool::new(false),
            schedules_changed: Notify::new(),
            flags_changed: Notify::new(),
        }
    }

    /// How long an idle lane may go unpolled: [`SLOW_POLL`] while the
    /// subscription is up, else `fallback` (the loop's old period).
    pub fn poll(&self, fallback: Duration) -> Duration {
        match self.live.load(Ordering::Acquire) {
            true => SLOW_POLL.max(fallback),
            false => fallback,
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

pub struct Listener {
    pub ctx: Arc<Ctx>,
}

impl Listener {
    pub async fn run(self, stop: CancellationToken) {
        let ctx = &self.ctx;
        let mut failures = 0;
        while !stop.is_cancelled() {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                s = ctx.broker.wake_ups() => s,
            };
            match stream {
                Ok(mut sub) => {
                    failures = 0;
                    ctx.wake.live.store(true, Ordering::Release);
                    // What was published while not subscribed is lost.
                    self.wake_all();
                    let mut check = tokio::time::interval(PING_EVERY);
                    check.reset();
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            m = sub.messages.next() => match m {
                                Some(m) => self.dispatch(&m),
                                None => break,
                            },
                            _ = check.tick() => {
                                let answered = tokio::select! {
                                    _ = stop.cancelled() => return,
                                    r = sub.ping() => r,
                                };
                                if let Err(e) = answered {
                                    tracing::debug!(error = %e, "the wake-up subscription does not answer");
                                    break;
                                }
                            },
                        }
                    }
                    ctx.wake.live.store(false, Ordering::Release);
                    // Back to polling every lane as often as before.
                    self.wake_all();
                    tracing::debug!("the wake-up subscription ended; subscribing again");
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::info!(error = %e, "could not subscribe to wake-ups (toolq:wake): idle queues are polled every second until it works");
                    }
                    failures += 1;
                }
            }
            sleep_or_stop(retry_delay(failures), &stop).await;
        }
    }

    fn wake_all(&self) {
        let ctx = &self.ctx;
        for qi in 0..ctx.queues.len() {
            ctx.delayed.mark(qi);
        }
        ctx.wake.schedules_changed.notify_one();
        ctx.wake.flags_changed.notify_one();
    }

    fn dispatch(&self, message: &str) {
        let ctx = &self.ctx;
        let w = &ctx.wake;
        match Signal::parse(message) {
            Some((Signal::Delayed, key)) => {
                if let Some(&qi) = w.delayed.get(key) {
                    ctx.delayed.mark(qi);
                }
            }
            Some((Signal::Schedules, key)) if w.schedules.contains_key(key) => {
                w.schedules_changed.notify_one()
            }
            Some((Signal::Flags, key)) if w.flags.contains_key(key) => w.flags_changed.notify_one(),
            _ => {}
        }
    }
}
