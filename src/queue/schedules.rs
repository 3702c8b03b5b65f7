//! Periodic schedules in Redis: each schedule is a hash in its queue's slot
//! (`QueueKeys::schedule`), polled through the queue's schedules set
//! (`QueueKeys::schedules_due`) and found by name through one global index
//! (`keys::SCHEDULES`). Definitions travel as opaque JSON: the cron math and
//! the job template are `crate::schedule`'s.

use std::collections::{BTreeMap, HashMap};

use super::broker::Broker;
use super::keys::{self, QueueKeys};
use super::scripts;
use super::{QueueError, Result};

/// What `schedule_due.lua` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSchedules {
    /// Redis's clock, unix ms.
    pub now_ms: u64,
    /// The earliest next tick of the queue's active schedules (unix s).
    pub earliest: Option<i64>,
    /// Schedules whose tick is due.
    pub names: Vec<String>,
}

/// One schedule as stored (see `QueueKeys::schedule`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// The definition, JSON.
    pub def: String,
    pub version: u64,
    /// The next tick, unix s.
    pub next: Option<i64>,
    pub paused: bool,
    /// `config` or `cli`.
    pub source: String,
    pub last_tick: Option<i64>,
    pub last_id: Option<String>,
    /// When the last tick's job was enqueued (Redis ms).
    pub last_at_ms: Option<u64>,
    pub updated_at_ms: Option<u64>,
}

/// One decided tick for `schedule_tick.lua`.
#[derive(Debug, Clone)]
pub struct TickRequest<'a> {
    pub name: &'a str,
    pub version: u64,
    /// The due tick seen (unix s): must still be the stored next tick.
    pub due: i64,
    /// The tick whose job to enqueue, with its id and payload; `None` skips.
    pub job: Option<(i64, &'a str, &'a str)>,
    /// The new next tick (unix s).
    pub next: i64,
}

/// How `schedule_tick.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickReply {
    /// Done by this call.
    Ok,
    /// Another worker decided this tick first.
    Taken,
    /// The definition changed since it was read.
    Changed,
    Paused,
    Gone,
    /// Not due yet by Redis's clock.
    Early,
}

/// How `schedule_put.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutReply {
    Created,
    Updated,
    Unchanged,
    /// The next tick given is not after the last tick enqueued.
    Stale,
}

/// How `schedule_pause.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReply {
    Ok,
    Gone,
    Stale,
}

impl Broker {
    /// The queue's due schedules and Redis's time.
    pub async fn schedules_due(&self, keys: &QueueKeys, limit: usize) -> Result<DueSchedules> {
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = scripts::SCHEDULE_DUE
            .key(keys.schedules_due())
            .arg(limit)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("schedule_due", e))?;
        let protocol = || QueueError::Protocol {
            op: "schedule_due",
            message: "expected {now, earliest, names...}".into(),
        };
        let mut it = reply.into_iter();
        let now_ms: u64 = it
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(protocol)?;
        let earliest: i64 = it
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(protocol)?;
        let names = it
            .map(|v| redis::from_redis_value(v).map_err(|_| protocol()))
            .collect::<Result<Vec<String>>>()?;
        Ok(DueSchedules {
            now_ms,
            earliest: (earliest >= 0).then_some(earliest),
            names,
        })
    }

    /// A schedule's stored state, `None` when there is none.
    pub async fn schedule_record(
        &self,
        keys: &QueueKeys,
        name: &str,
    ) -> Result<Option<ScheduleRecord>> {
        let h: HashMap<String, String> = self
            .query(
                "schedule_read",
                redis::cmd("HGETALL").arg(keys.schedule(name)),
            )
            .await?;
        let Some(def) = h.get("def") else {
            return Ok(None);
        };
        let int = |f: &str| h.get(f).and_then(|v| v.parse::<i64>().ok());
        Ok(Some(ScheduleRecord {
            def: def.clone(),
            version: int("version").unwrap_or(0).max(0) as u64,
            next: int("next"),
            paused: h.contains_key("paused"),
            source: h.get("source").cloned().unwrap_or_default(),
            last_tick: int("last_tick"),
            last_id: h.get("last_id").cloned(),
            last_at_ms: int("last_at").map(|v| v.max(0) as u64),
            updated_at_ms: int("updated_at").map(|v| v.max(0) as u64),
        }))
    }

    /// Decides one tick (see `schedule_tick.lua`); also returns Redis's time (ms).
    pub async fn schedule_tick(
        &self,
        keys: &QueueKeys,
        req: &TickRequest<'_>,
    ) -> Result<(TickReply, u64)> {
        let (tick, id, payload) = req.job.unwrap_or((0, "", ""));
        let mut c = self.conn().await?;
        let (outcome, now): (String, u64) = scripts::SCHEDULE_TICK
            .key(keys.schedule(req.name))
            .key(keys.schedules_due())
            .key(&keys.pending)
            .arg(req.name)
            .arg(req.version)
            .arg(req.due)
            .arg(tick)
            .arg(payload)
            .arg(id)
            .arg(req.next)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("schedule_tick", e))?;
        let reply = match outcome.as_str() {
            "ok" => TickReply::Ok,
            "taken" => TickReply::Taken,
            "changed" => TickReply::Changed,
            "paused" => TickReply::Paused,
            "gone" => TickReply::Gone,
            "early" => TickReply::Early,
            other => {
                return Err(QueueError::Protocol {
                    op: "schedule_tick",
                    message: format!("unknown outcome {other:?}"),
                })
            }
        };
        Ok((reply, now))
    }

    /// Writes a definition (see `schedule_put.lua`) and indexes its name.
    pub async fn schedule_put(
        &self,
        keys: &QueueKeys,
        name: &str,
        def: &str,
        next: i64,
        source: &str,
    ) -> Result<PutReply> {
        let mut c = self.conn().await?;
        let (outcome, _version): (String, i64) = scripts::SCHEDULE_PUT
            .key(keys.schedule(name))
            .key(keys.schedules_due())
            .arg(name)
            .arg(def)
            .arg(next)
            .arg(source)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("schedule_put", e))?;
        let reply = match outcome.as_str() {
            "created" => PutReply::Created,
            "updated" => PutReply::Updated,
            "unchanged" => PutReply::Unchanged,
            "stale" => PutReply::Stale,
            other => {
                return Err(QueueError::Protocol {
                    op: "schedule_put",
                    message: format!("unknown outcome {other:?}"),
                })
            }
        };
        if reply != PutReply::Stale {
            self.query::<i64>(
                "schedule_index",
                redis::cmd("HSET")
                    .arg(keys::SCHEDULES)
                    .arg(name)
                    .arg(&keys.name),
            )
            .await?;
            self.register_queues(&[&keys.name]).await?;
        }
        Ok(reply)
    }

    /// Pauses (`resume_at` `None`) or resumes a schedule at `resume_at` (unix s).
    pub async fn schedule_pause(
        &self,
        keys: &QueueKeys,
        name: &str,
        resume_at: Option<i64>,
    ) -> Result<PauseReply> {
        let mut c = self.conn().await?;
        let outcome: String = scripts::SCHEDULE_PAUSE
            .key(keys.schedule(name))
            .key(keys.schedules_due())
            .arg(name)
            .arg(if resume_at.is_some() {
                "resume"
            } else {
                "pause"
            })
            .arg(resume_at.unwrap_or(0))
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("schedule_pause", e))?;
        Ok(match outcome.as_str() {
            "ok" => PauseReply::Ok,
            "stale" => PauseReply::Stale,
            _ => PauseReply::Gone,
        })
    }

    /// Removes a schedule and its index entry; true when it existed.
    pub async fn schedule_remove(&self, keys: &QueueKeys, name: &str) -> Result<bool> {
        let mut c = self.conn().await?;
        let removed: i64 = scripts::SCHEDULE_REMOVE
            .key(keys.schedule(name))
            .key(keys.schedules_due())
            .arg(name)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("schedule_remove", e))?;
        self.query::<i64>(
            "schedule_index",
            redis::cmd("HDEL").arg(keys::SCHEDULES).arg(name),
        )
        .await?;
        Ok(removed > 0)
    }

    /// Every schedule's name and queue, sorted by name.
    pub async fn schedule_index(&self) -> Result<BTreeMap<String, String>> {
        self.query("schedule_index", redis::cmd("HGETALL").arg(keys::SCHEDULES))
            .await
    }

    /// The queue of schedule `name`, from the index.
    pub async fn schedule_queue(&self, name: &str) -> Result<Option<String>> {
        self.query(
            "schedule_index",
            redis::cmd("HGET").arg(keys::SCHEDULES).arg(name),
        )
        .await
    }
}
