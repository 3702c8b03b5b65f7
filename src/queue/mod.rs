//! The queue: everything toolq stores in Redis, behind one API.
//!
//! - `keys`: the only place key names are built.
//! - `scripts/*.lua`: one atomic operation each (`scripts.rs` loads them).
//! - `connection`: pool, dedicated blocking connections, TLS, URL masking.
//! - `broker`: the `Broker` handle, its connections and the settling items;
//!   its operations live in `impl Broker` blocks by what they do: `jobs`
//!   (enqueue, fetch, ack, retry, bury, defer, promote, requeue), `workers`
//!   (heartbeats, registration, recovery), `inspect` (depths, totals,
//!   results), `enqueue` (bulk, unique and capped enqueueing, batch
//!   notifications) and `admin` (queue discovery, dead jobs).
//! - `control`: operator control: the queue registry, pause, finding,
//!   cancelling and listing jobs, deleting a queue.
//! - `cache`: the tool result cache, its fill lock, and per-tool rate limits.
//!
//! The queue moves opaque payloads: it knows nothing of tools or workers.

mod admin;
mod broker;
mod cache;
mod catalog;
mod connection;
mod control;
mod enqueue;
mod inspect;
mod jobs;
pub mod keys;
mod scripts;
mod workers;

pub use crate::spec::mask_url;
pub use admin::DeadRetry;
pub use broker::{AckItem, AckReply, Broker, BuryItem, DeferItem, Depths, RetryItem};
pub use cache::{CacheClaim, RateSlot};
pub use connection::RedisTarget;
pub use control::{CancelReply, Located};
pub use enqueue::{ChunkOutcome, EnqueueItem};
pub use jobs::{slot, Requeue, BATCH_SLOTS};
pub use keys::QueueKeys;

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
    /// No connection could be had (Redis down or unreachable).
    #[error("queue.{op}: redis unreachable: {message}")]
    Unavailable { op: &'static str, message: String },
    /// This worker is not in the queue's worker set (it was declared dead
    /// and has not re-registered yet), so it may not take jobs.
    #[error("queue.fetch: worker is not registered")]
    NotRegistered,
    /// The Redis URL or TLS settings are unusable.
    #[error("{0}")]
    Config(String),
    /// Redis answered something the script contract does not allow.
    #[error("queue.{op}: unexpected reply: {message}")]
    Protocol { op: &'static str, message: String },
}

impl QueueError {
    pub(crate) fn redis(op: &'static str, source: redis::RedisError) -> Self {
        QueueError::Redis { op, source }
    }

    /// True when the error means Redis could not be reached (as opposed to a
    /// command Redis refused): callers back off and try again.
    pub fn is_unavailable(&self) -> bool {
        match self {
            QueueError::Unavailable { .. } => true,
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
