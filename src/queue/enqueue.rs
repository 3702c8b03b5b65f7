//! Bulk enqueueing for producers, and the notification list a waiting
//! producer reads. Plain chunks go as multi-value `LPUSH`es pipelined in one
//! round trip; a chunk with unique jobs, or any chunk under a pending cap,
//! goes through `enqueue.lua`, which takes the locks and stops at the cap,
//! and so does a chunk with scheduled jobs: the script wakes idle workers
//! when one is its delayed set's new earliest (workers do not poll idle
//! lanes' delayed sets every second).

use std::time::Duration;

use super::cluster::RedisConn;
use redis::ScriptInvocation;

use super::broker::Broker;
use super::keys::{self, QueueKeys};
use super::scripts;
use super::{QueueError, Result};

/// One job ready to go on a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueItem {
    pub id: String,
    /// The job's JSON, as workers will read it.
    pub payload: String,
    /// Due time (unix ms) of a scheduled job: it goes to `delayed`.
    pub run_at: Option<u64>,
    /// Taken as a lock for the job's lifetime; a held key skips the job.
    pub unique_key: Option<String>,
}

/// What a capped call did with a chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkOutcome {
    /// The first `taken` items were handled; the rest did not fit.
    pub taken: usize,
    /// Indexes (into the chunk) of items skipped as duplicates.
    pub duplicates: Vec<usize>,
}

/// What became of one job sent in a pipelined round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// On the queue (pending, or delayed for its `run_at`).
    Enqueued,
    /// Skipped: its `unique_key` is held by a job already queued or running.
    Duplicate,
    /// Redis answered the command carrying it with an error (e.g. `OOM` at
    /// `maxmemory`): it is not on the queue.
    Refused,
}

/// What became of a round trip: each job's fate, in input order, and the
/// first error Redis answered for the jobs it refused.
#[derive(Debug)]
pub struct Trip {
    pub fates: Vec<Fate>,
    pub refusal: Option<QueueError>,
}

/// Which jobs of a round trip one pipelined command carries.
enum Carries {
    /// None (the queue registry, the script load).
    Nothing,
    /// These jobs, by index in the trip.
    Jobs(Vec<usize>),
    /// An `enqueue.lua` call over the `len` jobs starting at `base`.
    Script { base: usize, len: usize },
}

impl Broker {
    /// Enqueues whole chunks, in order, in one round trip. Each command of
    /// the trip is atomic (an `LPUSH`, a `ZADD`, or a script that fails
    /// before its first write), so when Redis refuses some of them (`OOM`)
    /// every job's fate is still known: see [`Trip`]. An error means the
    /// reply was lost (a dropped connection): the fates are unknown.
    pub async fn enqueue_chunks(
        &self,
        keys: &QueueKeys,
        chunks: &[&[EnqueueItem]],
        unique_ttl: Duration,
    ) -> Result<Trip> {
        let scripted = |c: &[EnqueueItem]| {
            c.iter()
                .any(|i| i.unique_key.is_some() || i.run_at.is_some())
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        // The queue registry: O(1), one command per round trip.
        pipe.sadd(keys::QUEUES, &keys.name);
        let mut carries = vec![Carries::Nothing];
        if chunks.iter().any(|c| scripted(c)) {
            // Loaded in the same round trip: EVALSHA in a pipeline does not
            // retry on NOSCRIPT, and a restarted Redis forgets scripts.
            pipe.load_script(&scripts::ENQUEUE);
            carries.push(Carries::Nothing);
        }
        let mut base = 0;
        for chunk in chunks {
            if scripted(chunk) {
                pipe.invoke_script(&invocation(keys, chunk, 0, unique_ttl));
                carries.push(Carries::Script {
                    base,
                    len: chunk.len(),
                });
            } else {
                plain(&mut pipe, keys, chunk, base, &mut carries);
            }
            base += chunk.len();
        }
        let replies = self.pipe_durable("enqueue", &mut pipe).await?;
        if replies.len() != carries.len() {
            return Err(protocol(format!(
                "{} replies for {} commands",
                replies.len(),
                carries.len()
            )));
        }
        let mut trip = Trip {
            fates: vec![Fate::Enqueued; base],
            refusal: None,
        };
        for (carried, reply) in carries.iter().zip(replies) {
            if let redis::Value::ServerError(e) = reply {
                let refused: Vec<usize> = match carried {
                    Carries::Nothing => continue,
                    Carries::Jobs(jobs) => jobs.clone(),
                    Carries::Script { base, len } => (*base..base + len).collect(),
                };
                for i in refused {
                    trip.fates[i] = Fate::Refused;
                }
                trip.refusal
                    .get_or_insert_with(|| self.fail("enqueue", e.into()));
                continue;
            }
            if let Carries::Script { base, .. } = carried {
                let reply: Vec<i64> = redis::from_redis_value(reply)
                    .map_err(|e| protocol(format!("script reply: {e}")))?;
                for i in ChunkReply::parse(&reply)?.duplicates {
                    trip.fates[base + i] = Fate::Duplicate;
                }
            }
        }
        Ok(trip)
    }

    /// Enqueues the prefix of `items` that fits while `pending` holds fewer
    /// than `cap` jobs (scheduled jobs always fit).
    pub async fn enqueue_capped(
        &self,
        keys: &QueueKeys,
        items: &[EnqueueItem],
        cap: u64,
        unique_ttl: Duration,
    ) -> Result<ChunkOutcome> {
        let inv = invocation(keys, items, cap, unique_ttl);
        let reply: Vec<i64> = self.invoke_durable("enqueue", &inv).await?;
        let r = ChunkReply::parse(&reply)?;
        Ok(ChunkOutcome {
            taken: r.taken,
            duplicates: r.duplicates,
        })
    }

    /// How many jobs wait in `pending`.
    pub async fn pending_len(&self, keys: &QueueKeys) -> Result<u64> {
        self.query("pending", redis::cmd("LLEN").arg(&keys.pending))
            .await
    }

    /// Takes up to `max` ids of finished jobs from a batch's notification
    /// list, blocking up to `block` while it is empty. `conn` must be a
    /// dedicated connection: a blocked command stalls its connection.
    pub async fn pop_finished(
        &self,
        conn: &mut RedisConn,
        keys: &QueueKeys,
        batch: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<String>> {
        let key = keys.batch(batch);
        let ids: Option<Vec<String>> = redis::cmd("LPOP")
            .arg(&key)
            .arg(max.max(1))
            .query_async(conn)
            .await
            .map_err(|e| QueueError::redis("wait", e))?;
        if let Some(ids) = ids.filter(|ids| !ids.is_empty()) {
            return Ok(ids);
        }
        let popped: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&key)
            .arg(block.as_secs_f64())
            .query_async(conn)
            .await
            .map_err(|e| QueueError::redis("wait", e))?;
        Ok(popped.map(|(_, id)| vec![id]).unwrap_or_default())
    }

    /// Deletes a batch's notification list once nobody waits on it.
    pub async fn forget_batch(&self, keys: &QueueKeys, batch: &str) -> Result<()> {
        self.query("wait", redis::cmd("DEL").arg(keys.batch(batch)))
            .await
    }
}

/// `LPUSH` for jobs to run now, `ZADD` for scheduled ones; records which
/// jobs (by index in the trip, the chunk starting at `base`) each carries.
fn plain(
    pipe: &mut redis::Pipeline,
    keys: &QueueKeys,
    chunk: &[EnqueueItem],
    base: usize,
    carries: &mut Vec<Carries>,
) {
    let (now, later): (Vec<usize>, Vec<usize>) =
        (0..chunk.len()).partition(|&i| chunk[i].run_at.is_none());
    if !now.is_empty() {
        let payloads: Vec<&str> = now.iter().map(|&i| chunk[i].payload.as_str()).collect();
        pipe.lpush(&keys.pending, payloads);
        carries.push(Carries::Jobs(now.iter().map(|i| base + i).collect()));
    }
    if !later.is_empty() {
        let scheduled: Vec<(u64, &str)> = later
            .iter()
            .map(|&i| (chunk[i].run_at.unwrap_or(0), chunk[i].payload.as_str()))
            .collect();
        pipe.zadd_multiple(&keys.delayed, &scheduled);
        carries.push(Carries::Jobs(later.iter().map(|i| base + i).collect()));
    }
}

/// The `enqueue.lua` call for a chunk (see the script for the layout).
fn invocation(
    keys: &QueueKeys,
    items: &[EnqueueItem],
    cap: u64,
    unique_ttl: Duration,
) -> ScriptInvocation<'static> {
    let mut inv = scripts::ENQUEUE.prepare_invoke();
    inv.key(&keys.pending).key(&keys.delayed);
    for item in items {
        if let Some(u) = &item.unique_key {
            inv.key(keys.unique(u));
        }
    }
    inv.arg(cap)
        .arg(unique_ttl.as_secs().max(1))
        .arg(items.len());
    let mut lock = 0;
    for item in items {
        let j = match item.unique_key {
            Some(_) => {
                lock += 1;
                lock
            }
            None => 0,
        };
        inv.arg(&item.payload)
            .arg(item.run_at.unwrap_or(0))
            .arg(j)
            .arg(&item.id);
    }
    inv
}

struct ChunkReply {
    taken: usize,
    duplicates: Vec<usize>,
}

impl ChunkReply {
    fn parse(reply: &[i64]) -> Result<ChunkReply> {
        let (&taken, dups) = reply
            .split_first()
            .ok_or_else(|| protocol("empty reply".into()))?;
        Ok(ChunkReply {
            taken: usize::try_from(taken).map_err(|_| protocol(format!("taken = {taken}")))?,
            duplicates: dups
                .iter()
                .map(|&i| usize::try_from(i - 1).map_err(|_| protocol(format!("index {i}"))))
                .collect::<Result<_>>()?,
        })
    }
}

fn protocol(message: String) -> QueueError {
    QueueError::Protocol {
        op: "enqueue",
        message,
    }
}
