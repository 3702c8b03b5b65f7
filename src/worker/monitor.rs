//! The monitor: every few seconds, one cheap round of reads (depths per
//! state, live workers, PING time, Redis memory) that feeds the gauges and
//! `/health`, so scrapes never touch Redis.

use std::sync::Arc;
use std::time::Duration;

use metrics::{gauge, histogram};
use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use crate::health::metrics as m;
use crate::queue::QueueError;

pub const INTERVAL: Duration = Duration::from_secs(2);

pub struct Monitor {
    pub ctx: Arc<Ctx>,
}

impl Monitor {
    pub async fn run(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if let Err(e) = self.round().await {
                self.ctx.outage.failed("monitor", &e);
            }
            sleep_or_stop(INTERVAL, &stop).await;
        }
    }

    async fn round(&self) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        let rtt = ctx.broker.ping().await?;
        ctx.outage.ok();
        ctx.health.record_ping(rtt);
        histogram!(m::REDIS_RTT).record(rtt.as_secs_f64());
        let mut depths = Vec::with_capacity(ctx.queues.len());
        for keys in &ctx.queues.keys {
            let d = ctx.broker.depths(keys).await?;
            for (state, n) in [
                ("pending", d.pending),
                ("active", d.active),
                ("delayed", d.delayed),
                ("dead", d.dead),
            ] {
                gauge!(m::QUEUE_DEPTH, "queue" => keys.name.clone(), "state" => state)
                    .set(n as f64);
            }
            let live = ctx
                .broker
                .live_workers(keys, ctx.config.heartbeat_timeout())
                .await?;
            gauge!(m::WORKERS_LIVE, "queue" => keys.name.clone()).set(live.len() as f64);
            depths.push((keys.name.clone(), [d.pending, d.active, d.delayed, d.dead]));
        }
        ctx.health.set_depths(depths);
        ctx.health.set_mcp_servers(ctx.mcp.health());
        if let Some(used) = ctx.broker.info_field("memory", "used_memory").await? {
            if let Ok(bytes) = used.parse::<f64>() {
                gauge!(m::REDIS_MEMORY).set(bytes);
            }
        }
        Ok(())
    }
}
