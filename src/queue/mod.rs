//! The queue: everything toolq stores in Redis, behind one API.
//!
//! - `keys`: the only place key names are built.
//! - `scripts/*.lua`: one atomic operation each (`scripts.rs` loads them).
//! - `connection`: pool, dedicated blocking connections, TLS, Sentinel,
//!   URL masking.
//! - `sentinel`: the master found through Redis Sentinel.
//! - `cluster`: Redis Cluster: the target, the connection that is either
//!   kind, and the calls routed to named nodes.
//! - `slots`: pipelines over several slots of a cluster, sent in runs.
//! - `durable`: writes followed by `WAIT` when `wait_replicas` asks for it.
//! - `broker`: the `Broker` handle, its connections and the settling items;
//!   its operations live in `impl Broker` blocks by what they do: `jobs`
//!   (enqueue, fetch, ack, retry, bury, defer, promote, requeue), `workers`
//!   (heartbeats, registration, recovery), `inspect` (depths, totals,
//!   results), `enqueue` (bulk, unique and capped enqueueing, batch
//!   notifications) and `admin` (queue discovery, dead jobs).
//! - `control`: operator control: the queue registry, pause, finding,
//!   cancelling and listing jobs, deleting a queue.
//! - `cache`: the tool result cache, its fill lock, and per-tool rate limits.
//! - `fleet`: turns at fleet-wide chores and the queue gauges one worker
//!   reads for all, so each worker's background cost is the same in any fleet.
//! - `callback`: arming and sealing a batch's callback job.
//! - `cross_slot`: follow-ups and callbacks bound for a queue in another
//!   slot of a cluster.
//! - `oversized`: the stand-in a fetch returns for a payload over the limit.
//! - `progress`: running jobs' progress reports, fenced by the active hash.
//! - `shards`: a queue's shard layout (how many shards producers write
//!   to, workers serve, and a job may be found in).
//! - `schedules`: periodic schedules' definitions, next ticks and the
//!   compare-and-set that enqueues each tick once.
//! - `wake`: the wake-up channel that spares idle workers polling each
//!   lane (delayed jobs, schedules, pause and shard changes).
//!
//! The queue moves opaque payloads: it knows nothing of tools or workers.

mod admin;
mod broker;
mod cache;
mod callback;
mod catalog;
mod cluster;
mod connection;
mod control;
mod cross_slot;
mod durable;
mod enqueue;
mod fleet;
mod inspect;
mod jobs;
pub mod keys;
mod oversized;
mod progress;
mod schedules;
mod scripts;
mod sentinel;
mod shards;
mod slots;
mod wake;
mod workers;

pub use crate::spec::mask_url;
pub use admin::DeadRetry;
pub use broker::{AckItem, AckReply, Broker, BuryItem, DeferItem, Depths, FollowUpItem, RetryItem};
pub use cache::{CacheClaim, RateSlot};
pub use cluster::{Node, RedisConn};
pub use connection::{RedisTarget, WaitReplicas, RESPONSE_TIMEOUT};
pub use control::{CancelReply, CancelRequest, Located, QueueFlags};
pub use enqueue::{ChunkOutcome, EnqueueItem, Fate, Trip};
pub use fleet::{Gauges, Turn};
pub use jobs::{slot, DeadCaps, FetchLimits, Landing, Requeue, WaitingFetch, BATCH_SLOTS};
pub use keys::QueueKeys;
pub use oversized::Oversized;
pub use progress::ProgressReport;
pub use schedules::{DueSchedules, PauseReply, PutReply, ScheduleRecord, TickReply, TickRequest};
pub use shards::{Shards, MAX_SHARDS, SHARDS_TTL};
pub use wake::Signal;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis answered with an error or the connection failed during `op`.
    #[error("queue.{op}: {source}")]
    Redis {
        op: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// No connection could be had (Redis down or unreachable). The
    /// message says why in words (no connection-pool terms): callers add
    /// "redis unreachable" to it.
    #[error("queue.{op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// Redis refused our credentials: a wrong user name or password, or
    /// none given to a server that requires one. Counted as unavailable
    /// (a running worker waits for it to pass, and /health says Redis is
    /// down), but at start-up it is a configuration mistake: see
    /// [`Broker::check_reachable`].
    #[error("queue.{op}: redis authentication failed: {message}")]
    Auth { op: &'static str, message: String },
    /// This worker is not in the queue's worker set (it was declared dead
    /// and has not re-registered yet), so it may not take jobs.
    #[error("queue.fetch: worker is not registered")]
    NotRegistered,
    /// The Redis URL or TLS settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The master took the write, but fewer replicas than `wait_replicas`
    /// acknowledged it in time: a failover now could lose it. Waited out
    /// like an outage (a worker writes the outcome again; a producer reports
    /// the jobs as possibly not durable).
    #[error("queue.{op}: written to the master, but only {reached} of {wanted} replicas acknowledged it within {timeout_ms} ms (wait_replicas): it may not be durable, and a failover now could lose it")]
    NotDurable {
        op: &'static str,
        reached: u64,
        wanted: u32,
        timeout_ms: u64,
    },
    /// Redis answered something the script contract does not allow.
    #[error("queue.{op}: unexpected reply: {message}")]
    Protocol { op: &'static str, message: String },
}

impl QueueError {
    /// A Redis error during `op`; a refusal of our credentials becomes
    /// [`QueueError::Auth`].
    pub(crate) fn redis(op: &'static str, source: redis::RedisError) -> Self {
        match auth_failure(&source) {
            Some(message) => QueueError::Auth {
                op,
                message: message.into(),
            },
            None => QueueError::Redis { op, source },
        }
    }

    /// No connection from the pool, said without the pool's terms
    /// ("creating a new object", "waiting for a slot").
    pub(crate) fn pool(op: &'static str, e: deadpool_redis::PoolError) -> Self {
        use deadpool_redis::PoolError;
        let message = match e {
            PoolError::Backend(source) => return QueueError::redis(op, source),
            PoolError::Timeout(_) => format!(
                "no connection within {} s",
                connection::CONNECT_TIMEOUT.as_secs()
            ),
            PoolError::Closed => "the client was closed".into(),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                format!("cannot open a connection ({e})")
            }
        };
        QueueError::Unavailable { op, message }
    }

    /// True when Redis refused a write because it is at `maxmemory` with
    /// `noeviction` (`OOM`): nothing was written, and it passes once memory
    /// frees.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, QueueError::Redis { source, .. } if source.code() == Some("OOM"))
    }

    /// True when a write reached fewer replicas than `wait_replicas`.
    pub fn is_not_durable(&self) -> bool {
        matches!(self, QueueError::NotDurable { .. })
    }

    /// True when Redis refused our credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, QueueError::Auth { .. })
    }

    /// True when Redis's ACL refused the command (`NOPERM`).
    pub fn is_refused(&self) -> bool {
        matches!(self, QueueError::Redis { source, .. } if source.code() == Some("NOPERM"))
    }

    /// True when the error means Redis could not be reached (as opposed to a
    /// command Redis refused): callers back off and try again.
    pub fn is_unavailable(&self) -> bool {
        match self {
            QueueError::Unavailable { .. }
            | QueueError::Auth { .. }
            | QueueError::NotDurable { .. } => true,
            QueueError::Redis { source, .. } => {
                is_connection_error(source) || is_transient_state(source)
            }
            _ => false,
        }
    }
}

/// Redis answered, but with a state that passes on its own: a script
/// running too long (`BUSY`), a replica or a failover in progress
/// (`READONLY`, `MASTERDOWN`, `NOREPLICAS`), loading, a cluster resharding.
/// Callers wait it out like an outage instead of counting it as a refusal.
fn is_transient_state(e: &redis::RedisError) -> bool {
    matches!(
        e.code(),
        Some(
            "BUSY"
                | "READONLY"
                | "MASTERDOWN"
                | "NOREPLICAS"
                | "LOADING"
                | "TRYAGAIN"
                | "CLUSTERDOWN"
        )
    )
}

/// Why Redis refused our credentials, when it did: `AUTH` failing while a
/// connection is set up, or a command refused with `NOAUTH` (the URL has no
/// password) or `WRONGPASS`.
fn auth_failure(e: &redis::RedisError) -> Option<&'static str> {
    match e.code() {
        Some("NOAUTH") => Some("the server requires a password and the URL has none"),
        Some("WRONGPASS") => Some("wrong user name or password"),
        _ if e.kind() == redis::ErrorKind::AuthenticationFailed => {
            Some("wrong user name or password")
        }
        _ => None,
    }
}

pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
        )
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
