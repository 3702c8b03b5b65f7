//! Operator control: the queue registry, pausing, finding and cancelling a
//! job by id, listing jobs, deleting a queue. Off the job path: the lookups
//! cost O(depth) and are meant for people, not for every job.

use std::collections::BTreeSet;

use super::admin::glob_escape;
use super::broker::Broker;
use super::keys::{self, QueueKeys};
use super::scripts;
use super::Result;

/// Keys deleted per `DEL` when a queue is deleted.
const DELETE_CHUNK: usize = 500;

/// Where `locate` found a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    Pending {
        payload: String,
    },
    Scheduled {
        payload: String,
        due_ms: u64,
    },
    Running {
        payload: String,
        worker: String,
    },
    Dead {
        entry: String,
        died_ms: u64,
    },
    /// Only its result document is left (succeeded, cancelled, or a dead
    /// job purged from the dead set).
    Result {
        doc: String,
    },
    Unknown,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReply {
    /// Removed from `pending` or `scheduled` (the state it was in).
    Removed(String),
    /// Running: its worker was asked to stop it.
    Requested,
    /// Already finished with this status.
    Finished(String),
    Unknown,
}

/// A queue's operator flags, as `control_flags` reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFlags {
    pub paused: bool,
    pub cancels: Vec<CancelRequest>,
}

/// A running job an operator cancelled: which worker holds it, in which
/// slot of its active hash (`cancel.lua` found both), so the worker stops it
/// without keeping an index of its jobs by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub worker: String,
    pub slot: u64,
    pub id: String,
}

impl CancelRequest {
    /// Reads a member of the cancel set: `["worker", "slot", "id"]`.
    fn parse(member: &str) -> Option<Self> {
        let (worker, slot, id): (String, String, String) = serde_json::from_str(member).ok()?;
        Some(CancelRequest {
            worker,
            slot: slot.parse().ok()?,
            id,
        })
    }
}

impl Broker {
    /// Adds queues to the registry.
    pub async fn register_queues(&self, queues: &[&str]) -> Result<()> {
        if queues.is_empty() {
            return Ok(());
        }
        self.query::<i64>("registry", redis::cmd("SADD").arg(keys::QUEUES).arg(queues))
            .await
            .map(drop)
    }

    /// Every registered queue, sorted. A Redis written by toolq before the
    /// registry existed has none: its queues are found once by a `SCAN`
    /// and registered.
    pub async fn registered_queues(&self) -> Result<Vec<String>> {
        let names: BTreeSet<String> = self
            .query("registry", redis::cmd("SMEMBERS").arg(keys::QUEUES))
            .await?;
        if !names.is_empty() {
            return Ok(names.into_iter().collect());
        }
        let found = self.discover_queues().await?;
        let refs: Vec<&str> = found.iter().map(String::as_str).collect();
        self.register_queues(&refs).await?;
        Ok(found)
    }

    /// Pauses or resumes the queue, and wakes its workers to read the flag
    /// now (they read it only slowly otherwise).
    pub async fn set_paused(&self, keys: &QueueKeys, paused: bool) -> Result<()> {
        let cmd = match paused {
            true => redis::cmd("SET").arg(&keys.paused).arg("1").clone(),
            false => redis::cmd("DEL").arg(&keys.paused).clone(),
        };
        self.query::<redis::Value>("pause", &cmd).await?;
        self.wake(super::Signal::Flags, &keys.paused).await;
        Ok(())
    }

    /// What a worker must know of its lanes, in one round trip: whether
    /// each queue is paused (read from shard 0 only, which `pause` sets
    /// with the rest, and applied to every lane of the queue), and, when
    /// `cancels`, each lane's cancelled running jobs (a worker running
    /// nothing has nothing to cancel and reads none). So an idle worker
    /// reads one key per queue, not two per shard.
    pub async fn lane_flags(&self, lanes: &[QueueKeys], cancels: bool) -> Result<Vec<QueueFlags>> {
        let mut pipe = redis::pipe();
        for k in lanes {
            if k.shard == 0 {
                pipe.exists(&k.paused);
            }
            if cancels {
                pipe.zrange(&k.cancel, 0, -1);
            }
        }
        let flat: Vec<redis::Value> = self.query_pipe("control", &pipe).await?;
        let mut it = flat.into_iter();
        let mut out: Vec<QueueFlags> = Vec::with_capacity(lanes.len());
        let mut paused = false;
        for k in lanes {
            if k.shard == 0 {
                paused = it
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or(false);
            }
            let members: Vec<String> = match cancels {
                true => it
                    .next()
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .unwrap_or_default(),
                false => Vec::new(),
            };
            out.push(QueueFlags {
                paused,
                cancels: members
                    .iter()
                    .filter_map(|m| CancelRequest::parse(m))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Per queue: whether it is paused, and the running jobs an operator
    /// cancelled in the last minute. One round trip for all.
    pub async fn control_flags(&self, queues: &[QueueKeys]) -> Result<Vec<QueueFlags>> {
        let mut pipe = redis::pipe();
        for k in queues {
            pipe.exists(&k.paused).zrange(&k.cancel, 0, -1);
        }
        let flat: Vec<redis::Value> = self.query_pipe("control", &pipe).await?;
        let mut out = Vec::with_capacity(queues.len());
        let mut it = flat.into_iter();
        while let (Some(paused), Some(members)) = (it.next(), it.next()) {
            let members: Vec<String> = redis::from_redis_value(members).unwrap_or_default();
            out.push(QueueFlags {
                paused: redis::from_redis_value(paused).unwrap_or(false),
                cancels: members
                    .iter()
                    .filter_map(|m| CancelRequest::parse(m))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Finds a job by id (O(depth)).
    pub async fn locate(&self, keys: &QueueKeys, id: &str) -> Result<Located> {
        let mut c = self.conn().await?;
        let reply: Vec<String> = scripts::LOCATE
            .key(&keys.pending)
            .key(&keys.delayed)
            .key(&keys.workers)
            .key(&keys.dead)
            .key(keys.result(id))
            .arg(id)
            .arg(&keys.tag)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("locate", e))?;
        let mut it = reply.into_iter();
        let (state, text, detail) = (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        );
        let ms = |d: &str| d.parse::<f64>().map(|v| v as u64).unwrap_or(0);
        Ok(match state.as_str() {
            "pending" => Located::Pending { payload: text },
            "scheduled" => Located::Scheduled {
                payload: text,
                due_ms: ms(&detail),
            },
            "running" => Located::Running {
                payload: text,
                worker: detail,
            },
            "dead" => Located::Dead {
                entry: text,
                died_ms: ms(&detail),
            },
            "result" => Located::Result { doc: text },
            _ => Located::Unknown,
        })
    }

    /// Cancels a job by id (O(depth)); `doc_prefix` is the cancelled result
    /// document up to its closing (see `cancel.lua`).
    pub async fn cancel(
        &self,
        keys: &QueueKeys,
        id: &str,
        result_ttl_s: u64,
        doc_prefix: &str,
    ) -> Result<CancelReply> {
        let mut c = self.conn().await?;
        let reply: Vec<String> = scripts::CANCEL
            .key(&keys.pending)
            .key(&keys.delayed)
            .key(&keys.workers)
            .key(keys.result(id))
            .key(&keys.stats)
            .key(&keys.cancel)
            .arg(id)
            .arg(&keys.tag)
            .arg(result_ttl_s)
            .arg(doc_prefix)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("cancel", e))?;
        let mut it = reply.into_iter();
        Ok(match (it.next().as_deref(), it.next()) {
            (Some("removed"), Some(state)) => CancelReply::Removed(state),
            (Some("requested"), _) => CancelReply::Requested,
            (Some("finished"), Some(status)) => CancelReply::Finished(status),
            _ => CancelReply::Unknown,
        })
    }

    /// `count` pending payloads from the oldest, skipping `skip`.
    pub async fn pending_page(
        &self,
        keys: &QueueKeys,
        skip: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // Oldest at the right: index -1 is the next job to run.
        let stop = -(skip as i64) - 1;
        let start = stop - count as i64 + 1;
        let mut page: Vec<String> = self
            .query(
                "list",
                redis::cmd("LRANGE").arg(&keys.pending).arg(start).arg(stop),
            )
            .await?;
        page.reverse();
        Ok(page)
    }

    /// `count` scheduled payloads with their due time, soonest first.
    pub async fn scheduled_page(
        &self,
        keys: &QueueKeys,
        skip: usize,
        count: usize,
    ) -> Result<Vec<(String, f64)>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        self.query(
            "list",
            redis::cmd("ZRANGE")
                .arg(&keys.delayed)
                .arg(skip)
                .arg(skip + count - 1)
                .arg("WITHSCORES"),
        )
        .await
    }

    /// Workers registered on the queue (live or not yet recovered).
    pub async fn queue_workers(&self, keys: &QueueKeys) -> Result<Vec<String>> {
        self.query(
            "list",
            redis::cmd("ZRANGE").arg(&keys.workers).arg(0).arg(-1),
        )
        .await
    }

    /// Deletes every key of the queue (results included, found by a `SCAN`
    /// of the queue's own prefix) and unregisters it; returns the keys
    /// deleted.
    pub async fn delete_queue(&self, keys: &QueueKeys) -> Result<u64> {
        // Escaped, so a queue named `a*` deletes only its own keys.
        let pattern = format!("{}*", glob_escape(&keys.tag));
        let found = self.scan(&pattern, Some(&keys.pending)).await?;
        let mut deleted = 0;
        for chunk in found.chunks(DELETE_CHUNK) {
            deleted += self
                .query::<u64>("delete", redis::cmd("DEL").arg(chunk))
                .await?;
        }
        self.query::<i64>(
            "registry",
            redis::cmd("SREM").arg(keys::QUEUES).arg(&keys.name),
        )
        .await?;
        Ok(deleted)
    }
}
