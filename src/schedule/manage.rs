//! Adding, pausing, resuming, removing and reading schedules, for the CLI
//! and for the worker (which writes the configured ones at start). Every
//! next tick is computed from Redis's time and never at or before the last
//! tick enqueued, so changing a running schedule neither repeats a tick's
//! job nor stalls it.

use crate::queue::{Broker, Located, PauseReply, PutReply, QueueKeys, ScheduleRecord};

use super::definition::Definition;
use super::{Result, ScheduleError};

/// Attempts when a tick lands between reading the last tick and writing.
const RACE_ATTEMPTS: usize = 5;

/// Where a definition came from (stored with it; `toolq schedule show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Cli,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Cli => "cli",
        }
    }
}

/// A schedule as `toolq schedule list|show` presents it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct View {
    pub name: String,
    pub queue: String,
    /// `None` when what Redis holds cannot be read as a definition.
    pub definition: Option<Definition>,
    #[serde(skip)]
    pub record: ScheduleRecord,
    pub paused: bool,
    pub source: String,
    /// Next tick, unix s (`None` once paused).
    pub next: Option<i64>,
    /// Last tick enqueued, unix s.
    pub last_tick: Option<i64>,
    pub last_id: Option<String>,
    /// What became of the last tick's job: `pending`, `scheduled`,
    /// `running`, a result's status (`succeeded`, `retrying`, `dead`,
    /// `cancelled`), or `unknown` once its result expired.
    pub last_outcome: Option<String>,
}

/// Writes `def` (checked first) and returns what Redis did. A schedule of
/// the same name on another queue moves to this one, keeping its last tick.
pub async fn put(broker: &Broker, def: &Definition, source: Source) -> Result<PutReply> {
    let table = def.validate()?;
    let body = serde_json::to_string(def).map_err(|e| ScheduleError::Invalid {
        name: def.name.clone(),
        message: e.to_string(),
    })?;
    let keys = QueueKeys::new(&def.queue);
    let mut floor = None;
    if let Some(old) = broker.schedule_queue(&def.name).await? {
        if old != def.queue {
            let old_keys = QueueKeys::new(&old);
            floor = broker
                .schedule_record(&old_keys, &def.name)
                .await?
                .and_then(|r| r.last_tick);
            broker.schedule_remove(&old_keys, &def.name).await?;
        }
    }
    for _ in 0..RACE_ATTEMPTS {
        let now = (broker.time_ms().await? / 1000) as i64;
        let last = broker
            .schedule_record(&keys, &def.name)
            .await?
            .and_then(|r| r.last_tick);
        let from = now.max(last.unwrap_or(0)).max(floor.unwrap_or(0));
        let next = table.next_after(from)?;
        let reply = broker
            .schedule_put(&keys, &def.name, &body, next, source.as_str())
            .await?;
        if reply != PutReply::Stale {
            return Ok(reply);
        }
    }
    Err(ScheduleError::Invalid {
        name: def.name.clone(),
        message: "its ticks kept moving while it was written; try again".into(),
    })
}

/// Stops enqueueing `name`'s ticks until resumed.
pub async fn pause(broker: &Broker, name: &str) -> Result<()> {
    let keys = located(broker, name).await?;
    match broker.schedule_pause(&keys, name, None).await? {
        PauseReply::Gone => Err(ScheduleError::NotFound(name.into())),
        _ => Ok(()),
    }
}

/// Enqueues `name`'s ticks again from the first one after now (by Redis's
/// clock); the ticks that fell while it was paused do not run. Returns the
/// next tick.
pub async fn resume(broker: &Broker, name: &str) -> Result<i64> {
    let keys = located(broker, name).await?;
    for _ in 0..RACE_ATTEMPTS {
        let record = broker
            .schedule_record(&keys, name)
            .await?
            .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
        let def = parse(name, &record)?;
        let table = def.validate()?;
        let now = (broker.time_ms().await? / 1000) as i64;
        let next = table.next_after(now.max(record.last_tick.unwrap_or(0)))?;
        match broker.schedule_pause(&keys, name, Some(next)).await? {
            PauseReply::Ok => return Ok(next),
            PauseReply::Gone => return Err(ScheduleError::NotFound(name.into())),
            PauseReply::Stale => continue,
        }
    }
    Err(ScheduleError::Invalid {
        name: name.into(),
        message: "its ticks kept moving while it was resumed; try again".into(),
    })
}

/// Removes `name`: no tick is enqueued after this returns.
pub async fn remove(broker: &Broker, name: &str) -> Result<()> {
    let keys = located(broker, name).await?;
    broker.schedule_remove(&keys, name).await?;
    Ok(())
}

/// One schedule, with its last job's outcome.
pub async fn show(broker: &Broker, name: &str) -> Result<View> {
    let keys = located(broker, name).await?;
    let record = broker
        .schedule_record(&keys, name)
        .await?
        .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
    view(broker, name, &keys, record).await
}

/// Every schedule, by name. An index entry whose schedule is gone (its
/// queue was deleted) is left out.
pub async fn list(broker: &Broker) -> Result<Vec<View>> {
    let mut out = Vec::new();
    for (name, queue) in broker.schedule_index().await? {
        let keys = QueueKeys::new(&queue);
        if let Some(record) = broker.schedule_record(&keys, &name).await? {
            out.push(view(broker, &name, &keys, record).await?);
        }
    }
    Ok(out)
}

/// The stored definition of `name`.
pub fn parse(name: &str, record: &ScheduleRecord) -> Result<Definition> {
    serde_json::from_str(&record.def).map_err(|e| ScheduleError::Stored {
        name: name.into(),
        message: e.to_string(),
    })
}

async fn located(broker: &Broker, name: &str) -> Result<QueueKeys> {
    match broker.schedule_queue(name).await? {
        Some(queue) => Ok(QueueKeys::new(&queue)),
        None => Err(ScheduleError::NotFound(name.into())),
    }
}

async fn view(
    broker: &Broker,
    name: &str,
    keys: &QueueKeys,
    record: ScheduleRecord,
) -> Result<View> {
    let last_outcome = match &record.last_id {
        Some(id) => Some(outcome(broker, keys, id).await?),
        None => None,
    };
    Ok(View {
        name: name.into(),
        queue: keys.name.clone(),
        definition: parse(name, &record).ok(),
        paused: record.paused,
        source: record.source.clone(),
        next: (!record.paused).then_some(record.next).flatten(),
        last_tick: record.last_tick,
        last_id: record.last_id.clone(),
        last_outcome,
        record,
    })
}

/// A job's state in the result vocabulary: its result's status when it has
/// one, else where it is.
async fn outcome(broker: &Broker, keys: &QueueKeys, id: &str) -> Result<String> {
    let status = |doc: &str| {
        serde_json::from_str::<serde_json::Value>(doc)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned))
    };
    if let Some(s) = broker.result(keys, id).await?.as_deref().and_then(status) {
        return Ok(s);
    }
    Ok(match broker.locate(keys, id).await? {
        Located::Pending { .. } => "pending".into(),
        Located::Scheduled { .. } => "scheduled".into(),
        Located::Running { .. } => "running".into(),
        Located::Dead { .. } => "dead".into(),
        Located::Result { doc } => status(&doc).unwrap_or_else(|| "unknown".into()),
        Located::Unknown => "unknown".into(),
    })
}
