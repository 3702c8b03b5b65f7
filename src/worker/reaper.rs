//! The reaper: finds dead workers and moves their jobs back to the front of
//! pending (the recover script re-checks the heartbeat's age on Redis's
//! clock, so exactly one live worker recovers each job). Runs at start-up,
//! then four times per heartbeat interval; the usual round is one cheap
//! script over the fleet's heartbeats (the tool catalog's set, which every
//! heartbeat scores), whatever the number of queues. Only when that shows a
//! late worker not cleared yet are the queues' worker sets read; and, in
//! turn, one queue's set per heartbeat timeout divided by the queues (at
//! most one per heartbeat interval), for workers of builds that do not
//! score the catalog set.
//!
//! Two ways to be dead. A worker none of whose Redis connections is left (a
//! killed process: the kernel closes its sockets and Redis drops them at
//! once) is dead when its heartbeat is older than the interval plus
//! `disconnect_grace_ms`: within about a second. One that keeps connections
//! open but stops beating (paused, partitioned, stuck) is dead after the
//! heartbeat timeout. The connections are read (`CLIENT LIST`) only in a
//! round that found a heartbeat past the short limit, which a live fleet
//! never shows; they only make a worker a candidate earlier, the fenced
//! script still decides. One worker of a queue at a time lists them (a
//! turn, see `queue::fleet`): a death seen by the whole fleet at once costs
//! one `CLIENT LIST`, not one per worker. On a Redis Cluster the
//! connections are not looked at (see `Reaper::new`): the heartbeat timeout
//! alone declares death.
//!
//! A live worker beats a queue where it holds no jobs only every
//! `idle_beat` (see `heartbeat`), so a queue's worker set alone does not
//! tell a dead worker from an idle one within that time. A queue is read for
//! the workers late in the fleet (their fleet-wide heartbeat, every
//! interval, stopped), and for workers whose heartbeat there is older than
//! `idle_beat` plus the heartbeat timeout (which no live worker's is:
//! workers of builds that do not score the catalog set).
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::heartbeat::{idle_beat, reap_grace};
use super::metrics_init::POISONED_TOOL_LABEL;
use super::monitor::FLEET_KEEP;
use crate::health::metrics::{JOBS_DEAD, JOBS_RECOVERED};
use crate::job::{self, ErrorInfo, JobResult};
use crate::queue::{QueueError, QueueKeys};

/// Most dead workers handled per queue per round.
const BATCH: usize = 20;
/// Added to the time until the next heartbeat passes the limit, so that it
/// has when the reaper looks.
const NEXT_SLACK: Duration = Duration::from_millis(5);
/// The fleet hash field of the turn at listing connections.
const CLIENTS_CHORE: &str = "clients";
/// Heartbeats older than this many heartbeat timeouts leave the fleet-wide
/// look (gone workers stay in the catalog's set for a day).
const FLEET_WINDOW_TIMEOUTS: u32 = 2;

pub struct Reaper {
    pub ctx: Arc<Ctx>,
    /// Redis refused `CLIENT LIST` (an ACL from before it): connections are
    /// not looked at again, and only the heartbeat timeout declares death.
    pub blind: bool,
    /// Late workers of the fleet-wide look whose queues, when last read,
    /// held nothing more to do about them: not read again while they stay
    /// late. Empty until the first round reads every queue.
    cleared: Option<HashSet<String>>,
    /// The next queue of the slow sweep, and when the sweep last ran.
    sweep: usize,
    swept_at: Instant,
}

/// Why a worker was declared dead, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No connection of its left and its heartbeat past the short limit.
    Disconnected,
    /// Its heartbeat older than the timeout.
    Heartbeat,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Disconnected => "disconnected",
            Reason::Heartbeat => "heartbeat_timeout",
        }
    }
}

impl Reaper {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        // A cluster client opens node connections by itself (failovers,
        // migrations) without the worker's name, and `CLIENT LIST` shows one
        // node's clients only: a live worker could look disconnected.
        let blind = ctx.broker.target().is_cluster();
        if blind && ctx.config.disconnected_timeout().is_some() {
            tracing::info!("on a redis cluster, dead workers are found by the heartbeat timeout only (heartbeat_timeout_ms): connection names are not reliable across the cluster's nodes");
        }
        Reaper {
            ctx,
            blind,
            cleared: None,
            sweep: 0,
            swept_at: Instant::now(),
        }
    }

    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let period = self.ctx.config.heartbeat_interval() / 4;
            let wait = match self.round().await {
                // A heartbeat about to pass the limit is looked at right
                // then (a live fleet's never are: they beat first).
                Ok(Some(next)) => (next + NEXT_SLACK).min(period),
                Ok(None) => period,
                Err(e) => {
                    self.ctx.outage.failed("reap", &e);
                    period
                }
            };
            sleep_or_stop(wait, &stop).await;
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// One round; returns how soon another heartbeat will pass the
    /// (shortest) limit, if any will.
    async fn round(&mut self) -> Result<Option<Duration>, QueueError> {
        let ctx = self.ctx.clone();
        // Right after an outage every heartbeat is old: give live workers
        // time to beat again before judging them.
        if ctx.outage.is_down()
            || ctx
                .outage
                .since_last()
                .is_some_and(|d| d < reap_grace(&ctx))
        {
            return Ok(None);
        }
        let timeout = ctx.config.heartbeat_timeout();
        let fast = ctx.config.disconnected_timeout().filter(|_| !self.blind);
        let (late, next) = ctx
            .broker
            .late_in_fleet(
                fast.unwrap_or(timeout),
                timeout * FLEET_WINDOW_TIMEOUTS,
                BATCH,
            )
            .await?;
        let late: HashSet<String> = late.into_iter().filter(|w| *w != ctx.worker_id).collect();
        let look = match &mut self.cleared {
            None => true,
            Some(cleared) => {
                cleared.retain(|w| late.contains(w));
                late.iter().any(|w| !cleared.contains(w))
            }
        };
        // Read once per round, and only if some heartbeat is late.
        let mut connected = None;
        if look {
            let mut left = false;
            for qi in 0..ctx.queues.len() {
                left |= self.reap_queue(qi, fast, &mut connected, &late).await?;
            }
            if !left {
                self.cleared = Some(late);
            }
            self.swept_at = Instant::now();
        } else if self.swept_at.elapsed() >= self.sweep_step() {
            self.sweep = (self.sweep + 1) % ctx.queues.len().max(1);
            self.reap_queue(self.sweep, fast, &mut connected, &HashSet::new())
                .await?;
            self.swept_at = Instant::now();
        }
        ctx.outage.ok();
        Ok(next)
    }

    /// How often the slow sweep reads one queue's worker set: every queue
    /// once per heartbeat timeout, but no queue more often than once per
    /// heartbeat interval.
    fn sweep_step(&self) -> Duration {
        let queues = self.ctx.queues.len().max(1) as u32;
        (self.ctx.config.heartbeat_timeout() / queues).max(self.ctx.config.heartbeat_interval())
    }

    /// Recovers the jobs of queue `qi`'s late workers; true when a late
    /// worker was left alone (alive after all, or its connections not
    /// listed this round), so it must be looked at again.
    async fn reap_queue(
        &mut self,
        qi: usize,
        fast: Option<Duration>,
        connected: &mut Option<HashSet<String>>,
        late_in_fleet: &HashSet<String>,
    ) -> Result<bool, QueueError> {
        let ctx = self.ctx.clone();
        let keys = &ctx.queues.keys[qi];
        let timeout = ctx.config.heartbeat_timeout();
        // Far past any live worker's idle beat, however loaded its host:
        // a dead one is found sooner, as late in the fleet.
        let limit = timeout + idle_beat(&ctx);
        let (mut late, _) = ctx.broker.late_workers(keys, limit, BATCH).await?;
        let fleet: Vec<&str> = late_in_fleet
            .iter()
            .map(String::as_str)
            .filter(|w| !late.iter().any(|l| l == w))
            .collect();
        late.extend(ctx.broker.members(keys, &fleet).await?);
        let mut left = false;
        for dead in late.iter().filter(|w| **w != ctx.worker_id) {
            let (limit, reason) = match fast {
                Some(fast) if !self.is_connected(keys, connected, dead).await? => {
                    (fast, Reason::Disconnected)
                }
                _ => (timeout, Reason::Heartbeat),
            };
            let Some((recovered, buried)) = ctx
                .broker
                .recover(
                    keys,
                    dead,
                    limit,
                    ctx.config.max_recoveries,
                    ctx.dead_caps(),
                )
                .await?
            else {
                left = true;
                continue;
            };
            tracing::info!(queue = %keys.name, worker = %dead, recovered,
                buried = buried.len(), reason = reason.as_str(),
                "recovered the jobs of a dead worker");
            metrics::counter!(JOBS_RECOVERED, "queue" => keys.name.clone()).increment(recovered);
            if !buried.is_empty() {
                metrics::counter!(JOBS_DEAD, "queue" => keys.name.clone(), "tool" => POISONED_TOOL_LABEL)
                    .increment(buried.len() as u64);
            }
            for payload in &buried {
                // One failed write must not skip the others' results.
                if let Err(e) = self.record_poisoned(keys, dead, payload).await {
                    ctx.outage.failed("reap", &e);
                }
            }
        }
        Ok(left)
    }

    /// Whether `worker` has a connection open, from `CLIENT LIST` read at
    /// most once per round, and only in this worker's turn at it on the
    /// queue (else the worker counts as connected this round: the holder of
    /// the turn recovers it). A refusal turns the check off for good (the
    /// worker then counts as connected: the timeout alone decides).
    async fn is_connected(
        &mut self,
        keys: &QueueKeys,
        connected: &mut Option<HashSet<String>>,
        worker: &str,
    ) -> Result<bool, QueueError> {
        if connected.is_none() {
            let ctx = &self.ctx;
            let turn = ctx
                .broker
                .take_turn(
                    keys,
                    CLIENTS_CHORE,
                    &ctx.worker_id,
                    ctx.config.heartbeat_interval() / 4,
                    FLEET_KEEP,
                )
                .await?;
            if !turn.mine {
                return Ok(true);
            }
            match self.ctx.broker.connected_workers().await {
                Ok(set) => *connected = Some(set),
                Err(e) if e.is_refused() => {
                    tracing::warn!(error = %e, "redis refuses CLIENT LIST to this worker's user: dead workers are found by the heartbeat timeout only (grant +client|list, see ops/redis/users.acl)");
                    self.blind = true;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(connected.as_ref().is_none_or(|set| set.contains(worker)))
    }

    /// Writes the `dead` result of a job buried as poison, so whoever waits
    /// for it learns its fate, and releases its unique lock so the same work
    /// can be enqueued again. If this fails, the job is still in the dead
    /// set; only its result is missing (and the lock waits for its TTL).
    async fn record_poisoned(
        &self,
        keys: &QueueKeys,
        dead_worker: &str,
        payload: &str,
    ) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        let Ok(job) = job::parse(payload.as_bytes(), ctx.limits) else {
            return Ok(());
        };
        let Some(id) = job.id.clone() else {
            return Ok(());
        };
        tracing::warn!(queue = %keys.name, job_id = %id, tool = %job.tool,
            recoveries = job.recoveries, "buried a job that kept killing its workers");
        let now = job::now_ms();
        let result = JobResult {
            id: id.clone(),
            tool: job.tool.clone(),
            status: "dead".into(),
            output: None,
            error: Some(ErrorInfo {
                kind: "poisoned".into(),
                message: format!(
                    "worker died while running this job {} times",
                    job.recoveries
                ),
            }),
            attempts: job.attempt.saturating_add(1),
            recoveries: job.recoveries,
            enqueued_at: job.enqueued_at,
            started_at: now,
            finished_at: now,
            duration_ms: 0.0,
            worker: dead_worker.to_owned(),
            cached: false,
            meta: job.meta.clone(),
        };
        let Ok(text) = serde_json::to_string(&result) else {
            return Ok(());
        };
        let ttl = job.result_ttl_s.unwrap_or(ctx.config.result_ttl_s);
        ctx.broker
            .store_result(keys, &id, ttl, &text, job.batch.as_deref())
            .await?;
        if let Some(unique_key) = &job.unique_key {
            ctx.broker.release_unique(keys, unique_key, &id).await?;
        }
        Ok(())
    }
}
