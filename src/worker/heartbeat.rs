//! The heartbeat: registers the worker in each queue's worker set and keeps
//! its score fresh (Redis's clock). It runs on its own OS thread, with its
//! own runtime and Redis connection, so tools that hog the job threads cannot
//! starve it and get the worker declared dead.
//!
//! A lane where this worker holds jobs, or held some within a heartbeat
//! timeout (their outcomes may still wait in the acker), is beaten every
//! interval: that score is the fence of those jobs (`recover.lua`). A lane
//! where it holds none has nothing to fence, and is beaten only as its score would pass
//! [`idle_beat`] (3/5 of the heartbeat timeout), so that it still counts as
//! live there; the fetch that takes its first jobs there
//! refreshes that score itself (`fetch.lua`), and the next beat, an interval
//! later at most, goes on from there. The fleet-wide score (the catalog
//! set) and the registration are refreshed every interval, as before: the
//! reapers judge the fleet by them. The pause flags and shard layouts are
//! read every interval while jobs run (with the cancels), and while idle
//! when the wake-up listener says one changed, else every `SLOW_POLL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::outage::retry_delay;
use crate::queue::{Broker, QueueError, QueueKeys};

pub struct Heartbeat {
    pub ctx: Arc<Ctx>,
    /// The registration document (`toolq:worker:<id>`).
    pub info: String,
    /// The catalog document: the tools this worker serves.
    pub tools: String,
}

impl Heartbeat {
    /// Registers in every queue once; the worker must not fetch before this.
    pub async fn register(ctx: &Ctx, info: &str, tools: &str) -> Result<(), QueueError> {
        let names = ctx.queues.names();
        // Operator conveniences: a Redis user without rights to these keys
        // (an ACL from before them) must not keep the worker from working.
        if let Err(e) = ctx.broker.register_queues(&names).await {
            tracing::warn!(error = %e, "could not add this worker's queues to the queue registry (toolq:queues); `toolq stats` may not list them");
        }
        ctx.control
            .read(ctx.broker.lane_flags(&ctx.queues.keys, true).await);
        for keys in &ctx.queues.keys {
            ctx.broker.heartbeat(keys, &ctx.worker_id, true).await?;
        }
        let ttl = ctx.config.heartbeat_timeout() * 3;
        ctx.broker
            .set_worker_info(&ctx.worker_id, info, ttl)
            .await?;
        ctx.broker.publish_tools(&ctx.worker_id, tools, ttl).await?;
        ctx.health.record_heartbeat();
        Ok(())
    }

    /// Starts the heartbeat thread; it stops when `stop` fires.
    pub fn spawn(self, stop: CancellationToken) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("toolq-heartbeat".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "heartbeat runtime failed to start");
                        return;
                    }
                };
                rt.block_on(self.run(stop));
            })
    }

    async fn run(self, stop: CancellationToken) {
        // A broker of this thread's own: connections are driven by the
        // runtime that made them.
        let broker = match Broker::new(self.ctx.broker.target().clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "heartbeat could not set up its redis connection");
                return;
            }
        };
        let interval = self.ctx.config.heartbeat_interval();
        let mut failures = 0;
        // The server we registered with, to tell a Redis that lost our
        // registration (restarted or failed over) from one where another
        // worker declared us dead.
        let mut server = run_id(&broker).await;
        // When each lane was last beaten (all at registration), and the
        // flags last read.
        let mut beats = Beats {
            lanes: vec![Instant::now(); self.ctx.queues.len()],
            held: vec![None; self.ctx.queues.len()],
            flags: Instant::now(),
            force: false,
        };
        loop {
            let wait = match self.beat(&broker, &mut server, &mut beats).await {
                Ok(()) => {
                    if failures > 0 || server.is_none() {
                        // After an outage the server may be another one
                        // that kept our registration (persistence).
                        server = run_id(&broker).await;
                    }
                    failures = 0;
                    self.ctx.health.record_heartbeat();
                    interval
                }
                Err(e) => {
                    self.ctx.outage.failed("heartbeat", &e);
                    if !e.is_unavailable() {
                        // Refused, not unreachable (OOM): everyone's beat
                        // is refused too; no reaping until it passes.
                        self.ctx.outage.heartbeat_refused();
                    }
                    failures += 1;
                    if failures == 1 && e.is_unavailable() {
                        // A connection cut under a live Redis (`CLIENT
                        // KILL`, a reset) is mended by the next try on a
                        // fresh one: try at once, so that other reapers never
                        // see this worker without connections and with a
                        // heartbeat past the interval plus
                        // `disconnect_grace_ms`, and take it for dead.
                        Duration::ZERO
                    } else {
                        retry_delay(failures).min(interval)
                    }
                }
            };
            let next = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(next) => break,
                    _ = self.ctx.beat_now.notified() => {
                        beats.force = true;
                        break;
                    }
                    _ = self.ctx.wake.flags_changed.notified() => {
                        self.read_flags(&broker).await;
                        beats.flags = Instant::now();
                    }
                }
            }
        }
    }

    async fn beat(
        &self,
        broker: &Broker,
        server: &mut Option<String>,
        beats: &mut Beats,
    ) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        // An idle lane is beaten at the tick nearest to its score turning
        // `idle_beat` old (ticks drift by the beat's own time).
        let idle_beat = idle_beat(ctx);
        let interval = ctx.config.heartbeat_interval();
        // A lane that held jobs lately is beaten every interval for a
        // heartbeat timeout more: a finished job's outcome waits in the
        // acker without the lane's lifeline, and its settle is fenced by
        // this score until it lands.
        let lately = ctx.config.heartbeat_timeout();
        for (qi, keys) in ctx.queues.keys.iter().enumerate() {
            let at = Instant::now();
            if ctx.control.holds_jobs(qi) {
                beats.held[qi] = Some(at);
            }
            let held_lately = beats.held[qi].is_some_and(|h| at.duration_since(h) < lately);
            if !beats.force
                && !held_lately
                && at.duration_since(beats.lanes[qi]) + interval / 2 < idle_beat
            {
                continue;
            }
            if !broker.heartbeat(keys, &ctx.worker_id, false).await? {
                self.lost(broker, qi, keys, server).await?;
            }
            beats.lanes[qi] = at;
        }
        beats.force = false;
        // Cancels matter only to running jobs: read every beat while they
        // run; the pause flags and layouts otherwise only when told or slowly.
        let running = ctx.health.in_flight() > 0;
        let poll = ctx.wake.poll(ctx.config.heartbeat_interval());
        if running || beats.flags.elapsed() >= poll {
            beats.flags = Instant::now();
            ctx.control
                .read(broker.lane_flags(&ctx.queues.keys, running).await);
            self.watch_layouts(broker).await;
        }
        let ttl = ctx.config.heartbeat_timeout() * 3;
        broker
            .set_worker_info(&ctx.worker_id, &self.info, ttl)
            .await?;
        // The catalog document is large: extended, rewritten only if gone
        // (Redis lost it, or it expired during an outage).
        if !broker.touch_tools(&ctx.worker_id, ttl).await? {
            broker
                .publish_tools(&ctx.worker_id, &self.tools, ttl)
                .await?;
        }
        ctx.outage.ok();
        Ok(())
    }

    /// Reads the pause flags (no cancels: a running worker reads those at
    /// every beat) and the shard layouts now: the wake-up listener heard
    /// that a queue was paused, resumed or resharded.
    async fn read_flags(&self, broker: &Broker) {
        let ctx = &self.ctx;
        let running = ctx.health.in_flight() > 0;
        ctx.control
            .read(broker.lane_flags(&ctx.queues.keys, running).await);
        self.watch_layouts(broker).await;
    }

    /// Reads the served queues' shard layouts (one round trip); when the
    /// shards to serve changed, asks the worker to start again on the new
    /// lanes. So a change reaches a running worker within a heartbeat
    /// interval. A failed read changes nothing (the next beat reads again)
    /// and does not fail the heartbeat.
    async fn watch_layouts(&self, broker: &Broker) {
        let ctx = &self.ctx;
        let names = ctx.queues.names();
        let now = match broker.shard_layouts(&names).await {
            Ok(now) => now,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the queues' shard layouts");
                return;
            }
        };
        for ((name, was), is) in names.iter().zip(&ctx.queues.layouts).zip(&now) {
            if was.serve != is.serve && !ctx.reshard.is_cancelled() {
                tracing::info!(queue = %name, from = was.serve, to = is.serve,
                    "the queue's served shards changed: winding down and starting again on the new shards");
                ctx.reshard.cancel();
            }
        }
    }

    /// This worker is no longer in queue `qi`'s worker set: another worker
    /// declared it dead (it was paused or cut off) and took its jobs there,
    /// or Redis lost the set (a restart without persistence, a failover to a
    /// server without it). Either way the jobs it runs there are no longer
    /// its own: stop running those (only those), then register again.
    async fn lost(
        &self,
        broker: &Broker,
        qi: usize,
        keys: &QueueKeys,
        server: &mut Option<String>,
    ) -> Result<(), QueueError> {
        let now = run_id(broker).await;
        let fresh = self
            .ctx
            .health
            .heartbeat_age()
            .is_some_and(|age| age < self.ctx.config.heartbeat_timeout());
        match Loss::of(server.as_deref(), now.as_deref(), fresh) {
            Loss::DeclaredDead => tracing::warn!(queue = %keys.name,
                "this worker was declared dead on this queue and its jobs there recovered elsewhere; cancelling them"),
            Loss::RedisLostIt => tracing::warn!(queue = %keys.name,
                "Redis lost this worker's registration: the server restarted (or failed over) without its data; registering again, and cancelling the jobs this worker was running on this queue, whose records went with it"),
            Loss::Unknown => tracing::warn!(queue = %keys.name,
                "this worker is no longer registered on this queue (declared dead by another worker, or Redis lost its data); cancelling its jobs there and registering again"),
        }
        *server = now.or(server.take());
        self.ctx.control.lose_jobs(qi);
        broker.heartbeat(keys, &self.ctx.worker_id, true).await?;
        // The queue registry may be gone with the rest (`toolq stats`).
        if let Err(e) = broker.register_queues(&[keys.name.as_str()]).await {
            tracing::debug!(error = %e, "could not add the queue to the queue registry again");
        }
        Ok(())
    }
}

/// When the heartbeat last beat each lane and read the flags.
struct Beats {
    lanes: Vec<Instant>,
    /// When each lane was last seen holding jobs.
    held: Vec<Option<Instant>>,
    flags: Instant,
    /// Beat every lane this time (a fetch found a lane unregistered).
    force: bool,
}

/// The oldest a live worker's score gets on a lane where it holds no jobs:
/// 3/5 of the heartbeat timeout (at least an interval), so it still counts
/// as live there (`toolq stats`, the gauges) with 2/5 of the timeout to
/// spare, and so a reaper can tell a worker that stopped beating a lane.
pub fn idle_beat(ctx: &Ctx) -> Duration {
    (ctx.config.heartbeat_timeout() * 3 / 5).max(ctx.config.heartbeat_interval())
}

/// Why a worker found itself missing from a queue's worker set.
#[derive(Debug, PartialEq, Eq)]
enum Loss {
    /// The same server: another worker's reaper removed it.
    DeclaredDead,
    /// Another server (a restart or a failover): Redis lost the set.
    RedisLostIt,
    /// Cannot tell.
    Unknown,
}

impl Loss {
    /// From the server's `run_id` when this worker registered and now
    /// (new at every start of a server); when one is unknown (`INFO` not
    /// answered), from whether its last heartbeat is `fresh` (younger than
    /// the heartbeat timeout), since reapers take only stale workers.
    fn of(registered_with: Option<&str>, now: Option<&str>, fresh: bool) -> Loss {
        match (registered_with, now) {
            (Some(a), Some(b)) if a == b => Loss::DeclaredDead,
            (Some(_), Some(_)) => Loss::RedisLostIt,
            _ if fresh => Loss::RedisLostIt,
            _ => Loss::Unknown,
        }
    }
}

/// The Redis server's `run_id` (new at every start), if `INFO` answers.
async fn run_id(broker: &Broker) -> Option<String> {
    broker.info_field("server", "run_id").await.ok().flatten()
}

/// How long after an outage ends before this worker reaps others: everyone
/// gets a chance to heartbeat again first.
pub fn reap_grace(ctx: &Ctx) -> Duration {
    ctx.config.heartbeat_timeout()
}

#[cfg(test)]
mod tests {
    use super::Loss;

    #[test]
    fn a_new_server_lost_the_registration_the_same_one_declared_us_dead() {
        for fresh in [true, false] {
            assert_eq!(Loss::of(Some("a1"), Some("a1"), fresh), Loss::DeclaredDead);
            assert_eq!(Loss::of(Some("a1"), Some("b2"), fresh), Loss::RedisLostIt);
        }
    }

    #[test]
    fn without_run_ids_only_a_fresh_heartbeat_tells() {
        assert_eq!(Loss::of(None, Some("b2"), true), Loss::RedisLostIt);
        assert_eq!(Loss::of(None, Some("b2"), false), Loss::Unknown);
        assert_eq!(Loss::of(Some("a1"), None, false), Loss::Unknown);
    }
}
