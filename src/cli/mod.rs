//! What the `toolq` subcommands do, below argument parsing: each command is
//! a function that returns an [`Exit`] status or a [`CliError`] that maps to
//! the documented exit codes (0 ok, 1 jobs failed, 2 bad input or
//! configuration, a refused Redis password included; 3 Redis unreachable).

pub mod config;
pub mod dead;
pub mod demo;
mod duration;
#[cfg(feature = "test-tools")]
pub(crate) use duration::parse as parse_duration;
pub mod enqueue;
pub mod job;
pub mod jobs;
mod progress;
pub mod queue;
pub mod result;
pub mod schedule;
pub mod serve;
pub mod stats;
pub mod submit;
mod text;
pub mod tools;
mod wait;
mod watch;
pub mod worker;

pub use text::{safe, table};

use crate::config::ConfigError;
use crate::producer::ProducerError;
use crate::queue::QueueError;
use crate::worker::WorkerError;

/// How a command ended; the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    JobsFailed = 1,
    BadInput = 2,
    RedisDown = 3,
}

/// A command that could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    BadInput(String),
    #[error("redis unreachable: {0}")]
    RedisDown(String),
    /// Redis refuses writes (out of memory: `maxmemory` with `noeviction`),
    /// or went away part-way; the message says which. Exit code 3, like an
    /// unreachable Redis: the operator must act on Redis, and the same
    /// command works once they have.
    #[error("{0}")]
    Redis(String),
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit(&self) -> Exit {
        match self {
            CliError::BadInput(_) => Exit::BadInput,
            CliError::RedisDown(_) | CliError::Redis(_) => Exit::RedisDown,
            CliError::Failed(_) => Exit::JobsFailed,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::BadInput(e.to_string())
    }
}

impl From<QueueError> for CliError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Config(m) => CliError::BadInput(m),
            e if e.is_not_durable() => CliError::Redis(e.to_string()),
            e if e.is_unavailable() => CliError::RedisDown(e.to_string()),
            e if e.is_out_of_memory() => CliError::Redis(out_of_memory(&e)),
            e => CliError::Failed(e.to_string()),
        }
    }
}

/// What an operator needs to hear when Redis is out of memory.
fn out_of_memory(e: &QueueError) -> String {
    format!(
        "redis is out of memory and refused the write ({e}): maxmemory is reached and \
         maxmemory-policy noeviction refuses writes rather than evicting jobs. Free memory \
         (results expire; `toolq dead purge`) or raise maxmemory, then try again"
    )
}

impl From<ProducerError> for CliError {
    fn from(e: ProducerError) -> Self {
        match e {
            ProducerError::Queue(q) => q.into(),
            ProducerError::InvalidJob(m) | ProducerError::Refused(m) => CliError::BadInput(m),
            ProducerError::PartlyEnqueued(p) => {
                let total = p.enqueued.len()
                    + p.duplicates.len()
                    + p.not_enqueued.len()
                    + p.uncertain.len();
                let doubt = match p.uncertain.len() {
                    0 => String::new(),
                    n => format!(", and {n} may or may not have been (the connection failed while they were sent)"),
                };
                let why = match CliError::from(p.source) {
                    CliError::RedisDown(m) => format!("redis unreachable: {m}"),
                    other => other.to_string(),
                };
                CliError::Redis(format!(
                    "only {} of {total} jobs were enqueued (their ids are on stdout); {} were not{doubt}: {why}",
                    p.enqueued.len() + p.duplicates.len(),
                    p.not_enqueued.len(),
                ))
            }
            e => CliError::Failed(e.to_string()),
        }
    }
}

impl From<WorkerError> for CliError {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Queue(q) => q.into(),
            WorkerError::Config(m) => CliError::BadInput(m),
            WorkerError::Health(h) => CliError::BadInput(h.to_string()),
            WorkerError::Io(e) => CliError::Failed(e.to_string()),
            WorkerError::Stalled(_) => CliError::RedisDown(e.to_string()),
        }
    }
}

/// A `--queue` value of a producer or operator command: a plain queue name
/// (weights only order a worker's queues).
pub fn queue_name(queue: &str) -> Result<String, CliError> {
    let spec = crate::spec::QueueSpec::parse(queue).map_err(CliError::BadInput)?;
    if spec.weight.is_some() {
        return Err(CliError::BadInput(format!(
            "--queue {queue:?}: a weight only applies to `toolq worker`"
        )));
    }
    Ok(spec.name)
}

/// Fails fast with exit code 3 when Redis does not answer, so one-shot
/// commands do not hang on a dead server.
pub async fn ensure_reachable(broker: &crate::queue::Broker) -> Result<(), CliError> {
    // Unreachable is exit 3; a refused user name or password is bad
    // configuration (exit 2), which no retry fixes.
    broker.check_reachable().await?;
    Ok(())
}
