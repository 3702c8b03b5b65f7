//! The heartbeat: registers the worker in each queue's worker set and keeps
//! its score fresh (Redis's clock). It runs on its own OS thread, with its
//! own runtime and Redis connection, so tools that hog the job threads cannot
//! starve it and get the worker declared dead.

use std::sync::Arc;
use std::time::Duration;

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
        let names: Vec<&str> = ctx.queues.keys.iter().map(|k| k.name.as_str()).collect();
        // Operator conveniences: a Redis user without rights to these keys
        // (an ACL from before them) must not keep the worker from working.
        if let Err(e) = ctx.broker.register_queues(&names).await {
            tracing::warn!(error = %e, "could not add this worker's queues to the queue registry (toolq:queues); `toolq stats` may not list them");
        }
        ctx.control
            .read(ctx.broker.control_flags(&ctx.queues.keys).await);
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
        loop {
            let wait = match self.beat(&broker).await {
                Ok(()) => {
                    failures = 0;
                    self.ctx.health.record_heartbeat();
                    interval
                }
                Err(e) => {
                    self.ctx.outage.failed("heartbeat", &e);
                    failures += 1;
                    retry_delay(failures).min(interval)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn beat(&self, broker: &Broker) -> Result<(), QueueError> {
        let ctx = &self.ctx;
        for (qi, keys) in ctx.queues.keys.iter().enumerate() {
            if !broker.heartbeat(keys, &ctx.worker_id, false).await? {
                self.lost(broker, qi, keys).await?;
            }
        }
        ctx.control
            .read(broker.control_flags(&ctx.queues.keys).await);
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

    /// Another worker declared us dead on queue `qi` (we were paused or cut
    /// off) and took our jobs there: stop running those (only those), then
    /// register again.
    async fn lost(&self, broker: &Broker, qi: usize, keys: &QueueKeys) -> Result<(), QueueError> {
        tracing::warn!(queue = %keys.name,
            "this worker was declared dead on this queue and its jobs there recovered elsewhere; cancelling them");
        self.ctx.lose_jobs(qi);
        broker.heartbeat(keys, &self.ctx.worker_id, true).await?;
        Ok(())
    }
}

/// How long after an outage ends before this worker reaps others: everyone
/// gets a chance to heartbeat again first.
pub fn reap_grace(ctx: &Ctx) -> Duration {
    ctx.config.heartbeat_timeout()
}
