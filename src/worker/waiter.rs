//! One waiter per queue: while the fetcher is idle, blocks on its own Redis
//! connection until pending holds a job (`Broker::wait_for_job`, which moves
//! nothing: a job is never held by a wait) and wakes the fetcher the moment
//! one arrives. Latency without polling.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;

/// How long one `BLMOVE` blocks; short enough to notice the fetcher got busy.
const BLOCK: Duration = Duration::from_secs(2);

pub struct Waiter {
    pub ctx: Arc<Ctx>,
    pub queue: usize,
    pub idle: Arc<watch::Sender<bool>>,
    pub wake: Arc<Notify>,
}

/// How often a waiter of a paused queue looks whether it was resumed.
const PAUSED_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Waiter {
    pub async fn run(self, stop: CancellationToken) {
        let keys = &self.ctx.queues.keys[self.queue];
        let mut idle = self.idle.subscribe();
        let mut conn = None;
        let mut failures = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = idle.wait_for(|v| *v) => if r.is_err() { return },
            }
            // A paused queue's jobs stay where they are: waiting on them
            // would wake the fetcher for nothing, over and over.
            if self.ctx.control.is_paused(self.queue) {
                sleep_or_stop(PAUSED_RECHECK, &stop).await;
                continue;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.ctx.broker.dedicated(BLOCK).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        self.ctx.outage.failed("wait", &e);
                        sleep_or_stop(retry_delay(failures), &stop).await;
                        failures += 1;
                        continue;
                    }
                },
            };
            let landed = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.ctx.broker.wait_for_job(c, keys, BLOCK) => r,
            };
            match landed {
                Ok(true) => {
                    failures = 0;
                    self.idle.send_replace(false);
                    self.wake.notify_one();
                }
                Ok(false) => failures = 0,
                Err(e) => {
                    conn = None;
                    self.ctx.outage.failed("wait", &e);
                    sleep_or_stop(retry_delay(failures), &stop).await;
                    failures += 1;
                }
            }
        }
    }
}
