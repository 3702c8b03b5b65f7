//! The periodic loop: enqueues the ticks of periodic schedules. Every
//! worker runs one for the queues it serves, and none leads: each tick is
//! decided by a compare-and-set in Redis (`schedule_tick.lua`) on Redis's
//! clock, so exactly one worker enqueues it and a killed worker loses
//! nothing. At start it writes the configured schedules (`[[schedules]]`).
//!
//! Its cost per worker is one read script per served queue per
//! [`UNANNOUNCED`] while no tick is due (it sleeps until the earliest tick; a
//! schedule added, changed or resumed wakes it through the wake-up listener,
//! and while that subscription is down it looks every second), and a read
//! and a script per tick it competes for: the same whatever the fleet's size.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;
use crate::queue::{QueueError, QueueKeys, TickReply, TickRequest};
use crate::schedule::{self, manage, ScheduleError};

/// Longest sleep while the wake-up subscription is down: how soon a new or
/// changed schedule is seen then.
const POLL: Duration = Duration::from_secs(1);
/// Longest sleep while subscribed, not the wake-up listener's 30 s: a
/// schedule written without a wake-up (an older build, a user without the
/// channel) is seen within half the default misfire grace, so its first
/// tick runs late rather than being skipped as a misfire.
const UNANNOUNCED: Duration = Duration::from_secs(5);
/// After a round that left a due schedule undecided (an unreadable
/// definition, a clock that stepped back): look again soon, not at once.
const STUCK: Duration = Duration::from_millis(250);
/// Due schedules taken per read.
const BATCH: usize = 100;
/// Most ticks one schedule moves in a round: catching up after a pause of
/// a few seconds is a few steps; the misfire policy bounds the rest.
const MAX_STEPS: usize = 1000;
/// Woken this long after a tick is due, so Redis's clock has passed it.
const SLACK: Duration = Duration::from_millis(2);

pub struct Periodic {
    pub ctx: Arc<Ctx>,
}

impl Periodic {
    pub async fn run(self, stop: CancellationToken) {
        self.write_configured(&stop).await;
        let mut failures = 0;
        while !stop.is_cancelled() {
            let mut sleep = self.ctx.wake.poll(POLL).min(UNANNOUNCED);
            // Schedules live in shard 0's slot.
            for keys in self.ctx.queues.keys.iter().filter(|k| k.shard == 0) {
                match self.round(keys).await {
                    Ok(wait) => {
                        failures = 0;
                        sleep = sleep.min(wait);
                    }
                    Err(e) => {
                        self.ctx.outage.failed("schedule", &e);
                        sleep = retry_delay(failures);
                        failures += 1;
                    }
                }
            }
            if !sleep.is_zero() {
                tokio::select! {
                    _ = sleep_or_stop(sleep, &stop) => {}
                    _ = self.ctx.wake.schedules_changed.notified() => {}
                }
            }
        }
    }

    /// Writes each configured schedule (unchanged ones stay as they are),
    /// retrying through a Redis outage until it is done or the worker stops.
    async fn write_configured(&self, stop: &CancellationToken) {
        for def in &self.ctx.config.schedules {
            let mut failures = 0;
            loop {
                match manage::put(&self.ctx.broker, def, manage::Source::Config).await {
                    Ok(reply) => {
                        tracing::info!(schedule = %def.name, outcome = ?reply, "configured schedule written");
                        break;
                    }
                    Err(ScheduleError::Queue(e)) if e.is_unavailable() => {
                        self.ctx.outage.failed("schedule_put", &e);
                        sleep_or_stop(retry_delay(failures), stop).await;
                        failures += 1;
                        if stop.is_cancelled() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(schedule = %def.name, error = %e, "configured schedule not written");
                        break;
                    }
                }
            }
        }
    }

    /// Ticks the queue's due schedules; returns how long to sleep.
    async fn round(&self, keys: &QueueKeys) -> Result<Duration, QueueError> {
        let due = self.ctx.broker.schedules_due(keys, BATCH).await?;
        self.ctx.outage.ok();
        let mut now_ms = due.now_ms;
        let mut stuck = false;
        for name in &due.names {
            stuck |= !self.advance(keys, name, &mut now_ms).await?;
        }
        if stuck {
            return Ok(STUCK);
        }
        if !due.names.is_empty() {
            // Read again: the next ticks are known now.
            return Ok(Duration::ZERO);
        }
        Ok(match due.earliest {
            Some(s) => {
                Duration::from_millis((s.max(0) as u64 * 1000).saturating_sub(now_ms)) + SLACK
            }
            None => self.ctx.wake.poll(POLL).min(UNANNOUNCED),
        })
    }

    /// Moves schedule `name` through its due ticks; false when it could not
    /// (it stays due and is looked at again after [`STUCK`]).
    async fn advance(
        &self,
        keys: &QueueKeys,
        name: &str,
        now_ms: &mut u64,
    ) -> Result<bool, QueueError> {
        let broker = &self.ctx.broker;
        for _ in 0..MAX_STEPS {
            let Some(record) = broker.schedule_record(keys, name).await? else {
                return Ok(true);
            };
            let Some(due) = record.next.filter(|_| !record.paused) else {
                return Ok(true);
            };
            let decided = manage::parse(name, &record).and_then(|def| {
                let table = def.validate()?;
                Ok((schedule::decide(&def, &table, due, *now_ms)?, def))
            });
            let (decision, def) = match decided {
                Ok((Some(d), def)) => (d, def),
                Ok((None, _)) => return Ok(true),
                Err(e) => {
                    tracing::warn!(schedule = name, error = %e, "schedule not ticked");
                    return Ok(false);
                }
            };
            let job = decision
                .job_tick
                .map(|t| (t, def.job(t, *now_ms, decision.misfired)));
            let req = TickRequest {
                name,
                version: record.version,
                due,
                job: job
                    .as_ref()
                    .map(|(t, (id, p))| (*t, id.as_str(), p.as_str())),
                next: decision.next,
            };
            let (reply, now) = broker.schedule_tick(keys, &req).await?;
            *now_ms = now;
            match reply {
                TickReply::Ok => {
                    if decision.misfired {
                        tracing::info!(schedule = name, missed_from = due, enqueued = ?decision.job_tick,
                            policy = def.misfire.as_str(), next = decision.next,
                            "schedule misfired: its ticks passed the grace with no worker to enqueue them");
                    } else {
                        tracing::debug!(schedule = name, tick = due, "schedule tick enqueued");
                    }
                }
                // Someone else moved it, or it changed: read it again.
                TickReply::Taken | TickReply::Changed => {}
                TickReply::Paused | TickReply::Gone => return Ok(true),
                TickReply::Early => return Ok(false),
            }
        }
        Ok(false)
    }
}
