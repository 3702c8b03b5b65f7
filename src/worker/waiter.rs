//! One waiter per queue: while the fetcher relies on the waiters (idle, or
//! asking only the queues they named), blocks on its own Redis connection
//! until pending holds a job and, in the same round trip, fetches it
//! (`Broker::wait_and_fetch`): the job goes to the fetcher to start, a
//! round trip sooner than a wake-up followed by a fetch. When more jobs
//! wait behind it, or the wait could not fetch, it wakes the fetcher
//! saying which queue (`Landed`). Latency without polling.
//!
//! The fetch is sent with the wait, long before it runs, so it is fenced
//! as a fetch sent the moment it runs would not need to be: it takes
//! nothing for a worker whose heartbeat is not fresh (one frozen or cut
//! off since) and refreshes none; a reply lost with the connection puts
//! its batch back, as the fetcher's does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify, RwLock, Semaphore};
use tokio_util::sync::CancellationToken;

use super::acker::AckSender;
use super::context::Ctx;
use super::executor::Taken;
use super::fetcher::{put_back_batch, reply_lost, sleep_or_stop, Fetched};
use super::heartbeat::idle_beat;
use super::lifeline::Lifeline;
use super::outage::retry_delay;
use crate::queue::{
    slot, FetchLimits, Landing, QueueError, QueueKeys, RedisConn, WaitingFetch, RESPONSE_TIMEOUT,
};

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
    /// The fetcher's permits: a job fetched here runs under one as well.
    pub permits: Arc<Semaphore>,
    /// Held alone by a running suspect (see the fetcher).
    pub solo: Arc<RwLock<()>>,
    /// Where fetched jobs go to be started.
    pub delivered: mpsc::UnboundedSender<Fetched>,
    pub acker: AckSender,
}

/// Which queues' waiters saw a job land since the fetcher last looked. A
/// waiter whose mark is not taken yet does not wait again: under a backlog
/// its `BLMOVE` would return at once, over and over.
pub struct Landed {
    marks: Vec<AtomicBool>,
    taken: Notify,
    /// Fetch rounds finished (their jobs started), and the count when
    /// marks were last taken: the round after that one asks the marked
    /// queues. A waiter fetches again only once that round is over, so a
    /// job it fetches never starts before older ones that round took.
    rounds: AtomicU64,
    taken_at: AtomicU64,
    done: Notify,
}

impl Landed {
    pub fn new(queues: usize) -> Self {
        Landed {
            marks: (0..queues).map(|_| AtomicBool::new(false)).collect(),
            taken: Notify::new(),
            rounds: AtomicU64::new(0),
            taken_at: AtomicU64::new(0),
            done: Notify::new(),
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

    /// Until the fetcher finished the round that follows the last take of
    /// the marks (every take is followed by a round).
    async fn round_over(&self) {
        let after = self.taken_at.load(Ordering::Acquire);
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.rounds.load(Ordering::Acquire) > after {
                return;
            }
            done.await;
        }
    }

    /// The fetcher finished a round: its jobs are started.
    pub fn round_done(&self) {
        self.rounds.fetch_add(1, Ordering::AcqRel);
        self.done.notify_waiters();
    }

    /// The queues marked since the last call, in index order; clears them.
    pub fn take(&self) -> Vec<usize> {
        self.taken_at
            .store(self.rounds.load(Ordering::Acquire), Ordering::Release);
        let marked: Vec<usize> = (0..self.marks.len())
            .filter(|&i| self.marks[i].swap(false, Ordering::AcqRel))
            .collect();
        if !marked.is_empty() {
            self.taken.notify_waiters();
        }
        marked
    }
}

/// Longest wait for a free permit for a job the wait fetched before it is
/// put back: a fetch round's length, many times over.
const PERMIT_WAIT: Duration = Duration::from_millis(5);

/// How often a waiter of a paused queue looks whether it was resumed.
const PAUSED_RECHECK: std::time::Duration = std::time::Duration::from_millis(250);

impl Waiter {
    pub async fn run(self, stop: CancellationToken) {
        let keys = &self.ctx.queues.keys[self.queue];
        let mut idle = self.idle.subscribe();
        let mut conn = None;
        let mut failures = 0;
        let max_beat_age = max_beat_age(&self.ctx);
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
            // Fetched only with a free permit: a job taken that could not
            // start would wait behind this worker's running ones while
            // another worker could run it. Nor while a suspect runs alone
            // (see the fetcher). Otherwise the wait only watches.
            let may_fetch = self.permits.available_permits() > 0 && self.solo.try_read().is_ok();
            let fetch = may_fetch.then(|| Fetch {
                batch: self.ctx.batch.fetch_add(1, Ordering::Relaxed),
                // Weak: an idle wait must not count as holding jobs (the
                // heartbeat beats such lanes every interval).
                lifeline: Arc::downgrade(&self.ctx.control.lifeline(self.queue)),
            });
            let waited = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.wait(c, keys, fetch.as_ref(), max_beat_age) => r,
            };
            let landing = match waited {
                Ok(l) => l,
                Err(e) => {
                    conn = None;
                    if let Some(f) = fetch.filter(|_| reply_lost(&e)) {
                        put_back_batch(&self.acker, self.queue, f.batch, &stop).await;
                    }
                    self.ctx.outage.failed("wait", &e);
                    sleep_or_stop(retry_delay(failures), &stop).await;
                    failures += 1;
                    continue;
                }
            };
            failures = 0;
            let mut mark = landing.seen;
            match (landing.fetched, fetch) {
                (Ok(jobs), Some(f)) if !jobs.is_empty() => {
                    self.ctx.outage.ok();
                    if !self.deliver(jobs, f, &stop).await {
                        return;
                    }
                    // The fetcher asks the queue for the rest, if any.
                    mark = landing.more;
                }
                // Declared dead meanwhile: the fetcher's own fetch finds
                // that out too, and has the worker registered again.
                (Err(QueueError::NotRegistered), _) => {}
                (Err(e), _) => {
                    tracing::debug!(error = %e, "a waiting fetch failed; the fetcher fetches instead")
                }
                _ => {}
            }
            if mark {
                self.landed.mark(self.queue);
                self.wake.notify_one();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = async {
                        self.landed.taken(self.queue).await;
                        self.landed.round_over().await;
                    } => {}
                }
            }
        }
    }

    /// Blocks until a job lands, fetching it in the same round trip when
    /// `fetch` is given.
    async fn wait(
        &self,
        c: &mut RedisConn,
        keys: &QueueKeys,
        fetch: Option<&Fetch>,
        max_beat_age: Duration,
    ) -> Result<Landing, QueueError> {
        let ctx = &self.ctx;
        let Some(f) = fetch else {
            let seen = ctx.broker.wait_for_job(c, keys, BLOCK).await?;
            return Ok(Landing {
                seen,
                fetched: Ok(Vec::new()),
                more: seen,
            });
        };
        let limits = FetchLimits {
            solo_at: ctx.config.max_recoveries.max(1),
            max_bytes: ctx.limits.max_bytes,
            head_bytes: ctx.config.dead_max_payload_bytes,
        };
        let w = WaitingFetch {
            batch: f.batch,
            limits,
            max_beat_age,
            block: BLOCK,
        };
        ctx.broker.wait_and_fetch(c, keys, &ctx.worker_id, w).await
    }

    /// Hands the job the wait fetched to the fetcher with a free permit.
    /// A job that cannot start (every permit taken since the wait was sent,
    /// and none free within [`PERMIT_WAIT`]; the lane lost or paused
    /// meanwhile) is put back at the front of pending instead of waiting
    /// here. False when the stop came
    /// first (the job stays held: the stop puts it back).
    async fn deliver(&self, jobs: Vec<Vec<u8>>, f: Fetch, stop: &CancellationToken) -> bool {
        let queue = self.queue;
        let n = jobs.len() as u32;
        // The fetcher holds every free permit for the length of a fetch
        // round, and gives back those it did not fill: worth a moment's
        // wait, where a running job's permit is not.
        let permit = match self.permits.clone().try_acquire_many_owned(n) {
            Ok(p) => Some(p),
            Err(_) => {
                let sem = self.permits.clone();
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return false,
                    p = tokio::time::timeout(PERMIT_WAIT, sem.acquire_many_owned(n)) => {
                        p.ok().and_then(|p| p.ok())
                    }
                }
            }
        };
        // Lost: declared dead since the wait was sent, with no job left to
        // keep the old lifeline. A put-back is fenced: it does nothing to
        // a job no longer ours.
        let lifeline = f.lifeline.upgrade();
        let (Some(mut permit), Some(lifeline), false) =
            (permit, lifeline, self.ctx.control.is_paused(queue))
        else {
            put_back_batch(&self.acker, queue, f.batch, stop).await;
            return !stop.is_cancelled();
        };
        for (i, payload) in jobs.into_iter().enumerate() {
            let Some(permit) = permit.split(1) else {
                break;
            };
            let job = Fetched {
                taken: Taken {
                    queue,
                    slot: slot(f.batch, i),
                    payload,
                },
                permit,
                lifeline: lifeline.clone(),
            };
            if self.delivered.send(job).is_err() {
                return false;
            }
        }
        true
    }
}

/// What a waiting fetch was sent with.
struct Fetch {
    batch: u64,
    lifeline: Weak<Lifeline>,
}

/// The oldest heartbeat at which a waiting fetch may still take a job
/// (see `fetch.lua`): a live worker's idle lane is beaten before it is
/// older. It stays under the reply timeout the wait allows beyond its
/// block: a fetch Redis runs after the wait gave up on it (a Redis that
/// stalled that long) finds the heartbeat older, so takes nothing that
/// the put-back of its batch, sent on another connection, could miss.
fn max_beat_age(ctx: &Ctx) -> Duration {
    // An idle lane is beaten at a tick once it would pass `idle_beat`
    // within half an interval: younger than this by half an interval.
    let live = idle_beat(ctx) + ctx.config.heartbeat_interval();
    live.min(ctx.config.heartbeat_timeout() * 4 / 5)
        .min(RESPONSE_TIMEOUT / 2)
}
