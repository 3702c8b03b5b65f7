//! The queue API's handle: `Broker`, its connections, and the items the
//! settling operations take. The operations themselves are `impl Broker`
//! blocks in sibling files, by what they do (`jobs`, `workers`, `inspect`,
//! `enqueue`, `admin`, `cache`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::cluster::RedisConn;

use super::connection::{Connector, RedisTarget, CHECK_TIMEOUT};
use super::{is_connection_error, QueueError, Result};

/// A succeeded job, its result to record.
#[derive(Debug, Clone)]
pub struct AckItem {
    /// The job's slot in this worker's active hash (see [`super::slot`]).
    pub seq: u64,
    pub id: String,
    pub result_ttl_s: u64,
    pub result: String,
    pub batch: Option<String>,
    /// The job's unique key, whose lock is released with the ack.
    pub unique_key: Option<String>,
    /// Its `on_success` follow-up, pushed by the ack itself.
    pub follow_up: Option<FollowUpItem>,
}

/// A follow-up job, enqueued by the same script call that settles its
/// parent: it exists exactly when the parent's outcome was written.
#[derive(Debug, Clone)]
pub struct FollowUpItem {
    /// The queue it goes to.
    pub queue: String,
    /// The whole job, placeholders already replaced.
    pub payload: String,
}

/// What one ack call did with its items, by index into the items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReply {
    /// Items no longer ours (taken over): nothing written.
    pub stale: Vec<usize>,
    /// Items left held because a key of their own cannot be written, with
    /// why (naming the key): the caller buries them instead.
    pub unwritable: Vec<(usize, String)>,
}

/// A failed attempt to run again later.
#[derive(Debug, Clone)]
pub struct RetryItem {
    /// The job's slot in this worker's active hash (see [`super::slot`]).
    pub seq: u64,
    pub id: String,
    pub delay_ms: u64,
    pub payload: String,
    pub result_ttl_s: u64,
    pub result: String,
}

/// A job given up on.
#[derive(Debug, Clone)]
pub struct BuryItem {
    /// The job's slot in this worker's active hash (see [`super::slot`]).
    pub seq: u64,
    /// `None` when the payload was not a job with an id.
    pub id: Option<String>,
    pub dead_entry_prefix: String,
    pub result_ttl_s: u64,
    pub result: String,
    pub batch: Option<String>,
    /// The job's unique key, whose lock is released with the burial.
    pub unique_key: Option<String>,
    /// Cancelled by an operator: settled like a burial (result, notification,
    /// lock) but kept out of the dead set and counted as `cancelled`.
    pub cancelled: bool,
    /// Its `on_failure` follow-up, pushed by the burial itself.
    pub follow_up: Option<FollowUpItem>,
}

/// A job to park in the delayed set until `due_ms` (a `run_at` still ahead,
/// or a rate limit's next free slot).
#[derive(Debug, Clone)]
pub struct DeferItem {
    /// The job's slot in this worker's active hash (see [`super::slot`]).
    pub seq: u64,
    pub due_ms: u64,
    /// The payload to park; it carries the job's id, so identical jobs
    /// stay distinct members of the delayed set.
    pub payload: String,
}

/// Jobs per state of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depths {
    pub pending: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
}

/// A handle on Redis shared by every task of a process.
pub struct Broker {
    target: RedisTarget,
    pub(super) connector: Connector,
    /// One multiplexed connection checked out of the pool and kept: the pool
    /// pings on every checkout, which would double the hot path's round trips.
    hot: Mutex<Option<RedisConn>>,
}

impl Broker {
    pub fn new(target: RedisTarget) -> Result<Self> {
        let connector = target.connector()?;
        Ok(Broker {
            target,
            connector,
            hot: Mutex::new(None),
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    pub(super) async fn conn(&self) -> Result<RedisConn> {
        if let Some(c) = self.hot.lock().ok().and_then(|g| g.clone()) {
            return Ok(c);
        }
        let conn = self.connector.connect(None).await?;
        if let Ok(mut g) = self.hot.lock() {
            *g = Some(conn.clone());
        }
        Ok(conn)
    }

    /// Maps an error and forgets a broken hot connection so the next call
    /// reconnects. `READONLY` too: the server was demoted to a replica (a
    /// failover), and only a new connection finds the new master.
    pub(super) fn fail(&self, op: &'static str, e: redis::RedisError) -> QueueError {
        if is_connection_error(&e) || e.code() == Some("READONLY") {
            if let Ok(mut g) = self.hot.lock() {
                *g = None;
            }
        }
        QueueError::redis(op, e)
    }

    /// A connection of its own for blocking commands, so a `BLMOVE` never
    /// holds up the calls multiplexed on the shared one. Its reply timeout
    /// allows for `block`.
    pub async fn dedicated(&self, block: Duration) -> Result<RedisConn> {
        self.connector.connect(Some(block)).await
    }

    /// The check a command makes before it starts: a `PING` answered
    /// within [`CHECK_TIMEOUT`]. Redis down, refusing connections or silent
    /// is [`QueueError::Unavailable`] naming the (masked) URL; a refusal of
    /// our credentials is [`QueueError::Config`], since at start-up it is a
    /// configuration mistake that no retry fixes (exit code 2, where an
    /// unreachable Redis is 3).
    pub async fn check_reachable(&self) -> Result<Duration> {
        let (url, within) = (self.target.masked_url(), CHECK_TIMEOUT);
        match tokio::time::timeout(within, self.ping()).await {
            Ok(Ok(rtt)) => Ok(rtt),
            Ok(Err(QueueError::Auth { message, .. })) => Err(QueueError::Config(format!(
                "redis authentication failed for {url}: {message} (check the user name and password in the Redis URL)"
            ))),
            Ok(Err(QueueError::Unavailable { op, message })) => Err(QueueError::Unavailable {
                op,
                message: format!("{url}: {message}"),
            }),
            Ok(Err(QueueError::Redis { op, source })) if is_connection_error(&source) => {
                Err(QueueError::Unavailable {
                    op,
                    message: format!("{url}: {source}"),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueueError::Unavailable {
                op: "ping",
                message: format!("{url}: no answer within {} s", within.as_secs()),
            }),
        }
    }

    pub async fn ping(&self) -> Result<Duration> {
        let mut c = self.conn().await?;
        let start = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("ping", e))?;
        Ok(start.elapsed())
    }

    /// Runs an arbitrary command on a pooled connection (CLI helpers, tests).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        cmd.query_async(&mut c).await.map_err(|e| self.fail(op, e))
    }

    /// Runs a pipeline on the hot connection.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        pipe.query_async(&mut c).await.map_err(|e| self.fail(op, e))
    }
}
