//! The monitor: every few seconds, one cheap round of reads (depths per
//! state, live workers, PING time, Redis memory) that feeds the gauges and
//! `/health`, so scrapes never touch Redis. The queue gauges cost one script
//! per queue and round; one worker of the fleet at a time (a turn, see
//! `queue::fleet`) reads them in full, every other worker publishes what it
//! stored, so the fleet's cost grows with its size, not with its square.
//!
//! A queue where this worker holds no jobs (and held none at the last
//! round) has its gauges read only every `SLOW_POLL` while the wake-up
//! subscription is up: an idle worker's queues hold no pending jobs it
//! could take (it would be holding them), so what it would read changes
//! only by other workers' doing, and those read it at every round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{gauge, histogram};
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use crate::health::metrics as m;
use crate::queue::{Gauges, QueueError, QueueKeys};

pub const INTERVAL: Duration = Duration::from_secs(2);

pub struct Monitor {
    pub ctx: Arc<Ctx>,
}

/// The fleet hash field of the turn at reading the queue gauges.
const GAUGES_CHORE: &str = "gauges";
/// How long a queue's fleet hash outlives the last turn taken on it.
pub const FLEET_KEEP: Duration = Duration::from_secs(10);

impl Monitor {
    pub async fn run(self, stop: CancellationToken) {
        let groups = self.ctx.queues.groups().len();
        let mut last = Reads {
            gauges: vec![None; groups],
            at: vec![None; groups],
            busy: vec![false; groups],
        };
        while !stop.is_cancelled() {
            if let Err(e) = self.round(&mut last).await {
                self.ctx.outage.failed("monitor", &e);
            }
            sleep_or_stop(INTERVAL, &stop).await;
        }
    }

    async fn round(&self, last: &mut Reads) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        let rtt = ctx.broker.ping().await?;
        ctx.outage.ok();
        ctx.health.record_ping(rtt);
        histogram!(m::REDIS_RTT).record(rtt.as_secs_f64());
        // One turn per queue, in shard 0's fleet hash: the turn's holder
        // reads every shard and stores the sums, so shards cost no turns.
        let slow = ctx.wake.poll(INTERVAL);
        for (gi, lanes) in ctx.queues.groups().iter().enumerate() {
            let busy = lanes.clone().any(|qi| ctx.control.holds_jobs(qi));
            let was_busy = std::mem::replace(&mut last.busy[gi], busy);
            let fresh = last.at[gi].is_some_and(|at| at.elapsed() + INTERVAL / 2 < slow);
            if !busy && !was_busy && fresh {
                continue;
            }
            last.at[gi] = Some(Instant::now());
            let shards = &ctx.queues.keys[lanes.clone()];
            if let Some(g) = self.gauges(shards).await? {
                last.gauges[gi] = Some(g);
                publish(&shards[0].name, g);
            }
        }
        let depths = ctx
            .queues
            .names()
            .into_iter()
            .zip(last.gauges.iter())
            .filter_map(|(n, g)| {
                g.map(|g| (n.to_owned(), [g.pending, g.active, g.delayed, g.dead]))
            })
            .collect();
        ctx.health.set_depths(depths);
        ctx.health.set_mcp_servers(ctx.mcp.health());
        if let Some(used) = ctx.broker.info_field("memory", "used_memory").await? {
            if let Ok(bytes) = used.parse::<f64>() {
                gauge!(m::REDIS_MEMORY).set(bytes);
            }
        }
        Ok(())
    }

    /// The queue's gauges: read from Redis when it is this worker's turn
    /// (one worker per interval, fleet-wide: the active count reads every
    /// worker's hash), else as the last turn stored them. `None` before any
    /// turn stored them: the gauges keep their previous values.
    async fn gauges(&self, shards: &[QueueKeys]) -> Result<Option<Gauges>, QueueError> {
        let ctx = &self.ctx;
        let keep = FLEET_KEEP;
        let Some(keys) = shards.first() else {
            return Ok(None);
        };
        let turn = ctx
            .broker
            .take_turn(keys, GAUGES_CHORE, &ctx.worker_id, INTERVAL, keep)
            .await?;
        if !turn.mine {
            return Ok(turn.gauges);
        }
        let live = ctx
            .broker
            .live_workers(keys, ctx.config.heartbeat_timeout())
            .await?;
        let mut read = Gauges {
            live: live.len() as u64,
            ..Gauges::default()
        };
        for shard in shards {
            let d = ctx.broker.depths(shard).await?;
            read.pending += d.pending;
            read.active += d.active;
            read.delayed += d.delayed;
            read.dead += d.dead;
        }
        Ok(Some(ctx.broker.save_gauges(keys, read, keep).await?))
    }
}

/// Per queue: the last gauges, when they were last read, and whether this
/// worker held jobs of the queue at the last round.
struct Reads {
    gauges: Vec<Option<Gauges>>,
    at: Vec<Option<Instant>>,
    busy: Vec<bool>,
}

/// Sets the queue's gauges: every worker publishes the same readings, so
/// dashboards take `max` over workers, as they always did.
fn publish(queue: &str, g: Gauges) {
    for (state, n) in [
        ("pending", g.pending),
        ("active", g.active),
        ("delayed", g.delayed),
        ("dead", g.dead),
    ] {
        gauge!(m::QUEUE_DEPTH, "queue" => queue.to_owned(), "state" => state).set(n as f64);
    }
    gauge!(m::WORKERS_LIVE, "queue" => queue.to_owned()).set(g.live as f64);
}
