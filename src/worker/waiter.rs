//! One waiter per queue: while the fetcher relies on the waiters (idle, or
//! asking only the queues they named), blocks on its own Redis
//! connection until pending holds a job (`Broker::wait_for_job`, which moves
//! nothing: a job is never held by a wait) and wakes the fetcher the moment
//! one arrives, saying which queue (`Landed`). Latency without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;

/// How long one `BLMOVE` blocks. A wait that outlasts the idle spell is
/// harmless (a landing then only marks its queue), so it can be long: each
/// costs a command per queue.
const BLOCK: Duration = Duration::from_secs(10);

pub struct Waiter {
    pub ctx: Arc<Ctx>,
    pub queue: usize,
    pub idle: Arc<watch::Sender<bool>>,
    pub wake: Arc<Notify>,
    pub landed: Arc<Landed>,
}

/// Which queues' waiters saw a job land since the fetcher last looked. A
/// waiter whose mark is not taken yet does not wait again: under a backlog
/// its `BLMOVE` would return at once, over and over.
pub struct Landed {
    marks: Vec<AtomicBool>,
    taken: Notify,
}

impl Landed {
    pub fn new(queues: usize) -> Self {
        Landed {
            marks: (0..queues).map(|_| AtomicBool::new(false)).collect(),
            taken: Notify::new(),
        }
    }

    fn mark(&self, queue: usize) {
        if let Some(m) = self.marks.get(queue) {
            m.store(true, Ordering::Release);
        }
    }

    /// Until the fetcher took `queue`'s mark.
    async fn taken(&self, queue: usize) {
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if !self.marks[queue].load(Ordering::Acquire) {
                return;
            }
            taken.await;
        }
    }

    /// The queues marked since the last call, in index order; clears them.
    pub fn take(&self) -> Vec<usize> {
        let marked: Vec<usize> = (0..self.marks.len())
            .filter(|&i| self.marks[i].swap(false, Ordering::AcqRel))
            .collect();
        if !marked.is_empty() {
            self.taken.notify_waiters();
        }
        marked
    }
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
                    self.landed.mark(self.queue);
                    self.wake.notify_one();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.landed.taken(self.queue) => {}
                    }
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
