//! Configuration: built-in defaults, then `config/toolq.toml` (or `--config
//! FILE`), then the profile's file (`TOOLQ_PROFILE`), then environment
//! variables (`TOOLQ_*` with `__` for nesting, secrets read from the files
//! `*_FILE` variables name), then command-line flags. Every default is a
//! named constant here and is mirrored, commented, in `config/toolq.toml`.
//!
//! - `load`: the layers in order, and where each value came from.
//! - `variables`: the environment as configuration reads it (which `TOOLQ_`
//!   names are keys, which belong to scripts and tests, the `*_FILE` secrets).
//! - `profile`: development, testing, production, and what production refuses.
//! - `validate`: the checks serde cannot make, and the messages naming where
//!   a bad value came from; `unknown`: unknown keys, with a suggestion.
//! - `show`: the effective configuration as `toolq config` prints it, masked.

mod load;
mod profile;
mod serve;
mod show;
mod unknown;
mod validate;
mod variables;

#[cfg(feature = "test-tools")]
pub(crate) use load::load_with_env;
pub use load::Explained;
pub use profile::Profile;
pub use serve::ServeConfig;
pub use show::Entry;
pub use variables::{OTHER_VARIABLES, OTHER_VARIABLE_PREFIXES};

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_CONFIG_FILE: &str = "config/toolq.toml";
pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_CONCURRENCY: usize = 10;
/// Loopback: the side port answers without authentication, so a worker run
/// on a host exposes nothing by default. The Docker image and compose set
/// `0.0.0.0:9464`, since a container's probes and scrapers come from outside.
pub const DEFAULT_HTTP_ADDR: &str = crate::spec::DEFAULT_HTTP_ADDR;
/// Side-port connections open at once: a fixed share of the worker's file
/// descriptors, whoever connects.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 32;
/// How long a side-port connection may take to send a request header
/// (also the longest a kept-alive one may sit idle).
pub const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 5000;
/// Fits inside the usual 30 s container stop timeout.
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 25;
pub const DEFAULT_RESULT_TTL_S: u64 = 3600;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 5000;
/// How much later than its next heartbeat was due a worker whose Redis
/// connections are all closed is declared dead: a live worker whose
/// connections were cut reconnects at its next beat (which retries at once
/// on a fresh connection), so a quarter second past the interval tells it
/// from a dead one with room for a slow beat.
pub const DEFAULT_DISCONNECT_GRACE_MS: u64 = 250;
/// A job whose worker died this many times is buried as poison.
pub const DEFAULT_MAX_RECOVERIES: u32 = 3;
pub const DEFAULT_DEAD_MAX_JOBS: u64 = 100_000;
pub const DEFAULT_DEAD_MAX_AGE_S: u64 = 7 * 24 * 3600;
/// The dead set's size in bytes, besides its count: 100,000 entries of a
/// megabyte each would otherwise be 100 GB of Redis memory.
pub const DEFAULT_DEAD_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes of a raw payload (one that was not a valid job) a dead entry
/// keeps; a longer one is kept as this prefix, its size and its SHA-1.
pub const DEFAULT_DEAD_MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 1000;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;
/// Most jobs taken per fetch round trip (bounded by free permits too).
pub const DEFAULT_FETCH_BATCH: usize = 100;
/// Jobs a worker holds beyond its concurrency, fetched while the others
/// run: off by default, since a held job that waits for a slot is one that
/// an idle worker elsewhere could have run (README "Performance", prefetch).
pub const DEFAULT_PREFETCH: usize = 0;
/// Most job outcomes written per ack round trip.
pub const DEFAULT_ACK_BATCH: usize = 200;
/// How long a unique job's key is held at most: the worker releases it when
/// the job succeeds or dies, so this only bounds a lock whose job was lost.
pub const DEFAULT_UNIQUE_TTL_S: u64 = 3600;
/// How long a write waits for its replicas when `wait_replicas` is set.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 1000;
/// Most replicas a write may wait for.
pub const MAX_WAIT_REPLICAS: u32 = 16;
/// Longest wait for replicas: well under the 10 s a Redis call may take.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 5000;
/// Producers wait while a queue holds this many pending jobs; 0 = no cap.
pub const DEFAULT_MAX_PENDING: u64 = 0;

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything a worker or the CLI needs to know. An unknown key is an error
/// (a misspelt one would otherwise leave its default in place unseen).
/// `Debug` is written by hand below and `Serialize` masks the Redis URL's
/// password: both may end up in front of people.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    #[serde(serialize_with = "masked_url")]
    pub redis_url: String,
    /// PEM file with the CA that signed the Redis server's certificate, when
    /// it is not in the system roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Seed nodes (`host:port`) of a Redis Cluster; when given, toolq talks
    /// to the cluster, and `redis_url` supplies only the credentials and TLS
    /// (`rediss://`) for every node (its host and port are not used).
    #[serde(deserialize_with = "list_or_csv")]
    pub redis_cluster_nodes: Vec<String>,
    /// The production profile refuses a password sent over plain `redis://`
    /// to a host that is not loopback; this says the network is trusted.
    pub allow_insecure_redis: bool,
    /// The worker refuses a Redis whose `maxmemory-policy` evicts keys (an
    /// evicted queue key loses jobs); this says the operator accepts that.
    pub allow_evicting_redis: bool,
    /// Queues to serve, in priority order; `name=weight` on any of them
    /// switches from strict order to weighted random order.
    #[serde(deserialize_with = "list_or_csv")]
    pub queues: Vec<String>,
    /// Most tool executions at once in one process.
    pub concurrency: usize,
    /// Jobs fetched ahead of a free slot, so Redis fetches and settles the
    /// next batch while this one runs instead of the two taking turns.
    pub prefetch: usize,
    /// Side port for health and metrics, or `off`.
    pub http_addr: String,
    /// Most connections the side port keeps open at once (and never more
    /// than a quarter of the fd limit); over it, the one idle longest is
    /// closed (README "Run a fleet", side port).
    pub http_max_connections: usize,
    /// A side-port connection that sends no complete request header for this
    /// long (fresh, or idle after a response) is closed.
    pub http_header_timeout_ms: u64,
    pub log_format: LogFormat,
    /// How long in-flight jobs may finish after SIGTERM before they are put back.
    pub shutdown_grace_s: u64,
    /// Default result lifetime; a job's `result_ttl_s` overrides it.
    pub result_ttl_s: u64,
    /// Default total tries; a job's `max_attempts` overrides it.
    pub max_attempts: u32,
    pub max_payload_bytes: usize,
    pub max_json_depth: usize,
    pub heartbeat_interval_ms: u64,
    /// A worker silent this long is dead and its jobs are recovered.
    pub heartbeat_timeout_ms: u64,
    /// A worker with none of its Redis connections left is dead once its
    /// heartbeat is older than the interval plus this: a killed process is
    /// seen within a second instead of after the timeout. 0 turns it off
    /// (e.g. a fleet mid-upgrade from a version that did not name its
    /// connections).
    pub disconnect_grace_ms: u64,
    pub max_recoveries: u32,
    pub dead_max_jobs: u64,
    pub dead_max_age_s: u64,
    /// Total bytes of dead entries kept; the oldest go first beyond it.
    pub dead_max_bytes: u64,
    /// Most bytes of a raw payload a dead entry keeps (the rest is summed
    /// up by its size and SHA-1), so hostile payloads cannot fill Redis.
    pub dead_max_payload_bytes: usize,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub fetch_batch: usize,
    pub ack_batch: usize,
    /// Producers (`toolq submit`, `enqueue`) wait while the queue holds this
    /// many pending jobs, instead of growing Redis without bound; 0 = no cap.
    pub max_pending: u64,
    /// Longest a unique job's key stays held (`unique_key`).
    pub unique_ttl_s: u64,
    /// Replicas that must have a write before it counts as done (`WAIT`):
    /// enqueues and a worker's acks, retries and burials. 0 = do not wait
    /// (replication stays asynchronous; a failover can lose the last writes).
    pub wait_replicas: u32,
    /// How long a write waits for `wait_replicas`; fewer by then is an error
    /// (the producer's job may not be durable; the worker tries the
    /// settlement again).
    pub wait_timeout_ms: u64,
    /// Per-tool settings (`[tools.weather]`).
    pub tools: crate::tools::ToolsConfig,
    /// MCP servers whose tools the worker runs (`[mcp.servers.<name>]`).
    pub mcp: crate::tools::mcp::McpConfig,
    /// The gateway (`toolq serve`).
    pub serve: ServeConfig,
    /// Periodic jobs (`[[schedules]]`), written to Redis at worker start.
    pub schedules: Vec<crate::schedule::Definition>,
    /// The profile loaded (`TOOLQ_PROFILE`): not a key of the file.
    #[serde(skip)]
    pub profile: Option<Profile>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_url: DEFAULT_REDIS_URL.into(),
            redis_ca_file: None,
            redis_cluster_nodes: Vec::new(),
            allow_insecure_redis: false,
            allow_evicting_redis: false,
            queues: vec![DEFAULT_QUEUE.into()],
            concurrency: DEFAULT_CONCURRENCY,
            prefetch: DEFAULT_PREFETCH,
            http_addr: DEFAULT_HTTP_ADDR.into(),
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            http_header_timeout_ms: DEFAULT_HTTP_HEADER_TIMEOUT_MS,
            log_format: LogFormat::Pretty,
            shutdown_grace_s: DEFAULT_SHUTDOWN_GRACE_S,
            result_ttl_s: DEFAULT_RESULT_TTL_S,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_payload_bytes: crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            max_json_depth: crate::job::DEFAULT_MAX_JSON_DEPTH,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            disconnect_grace_ms: DEFAULT_DISCONNECT_GRACE_MS,
            max_recoveries: DEFAULT_MAX_RECOVERIES,
            dead_max_jobs: DEFAULT_DEAD_MAX_JOBS,
            dead_max_age_s: DEFAULT_DEAD_MAX_AGE_S,
            dead_max_bytes: DEFAULT_DEAD_MAX_BYTES,
            dead_max_payload_bytes: DEFAULT_DEAD_MAX_PAYLOAD_BYTES,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            fetch_batch: DEFAULT_FETCH_BATCH,
            ack_batch: DEFAULT_ACK_BATCH,
            max_pending: DEFAULT_MAX_PENDING,
            unique_ttl_s: DEFAULT_UNIQUE_TTL_S,
            wait_replicas: 0,
            wait_timeout_ms: DEFAULT_WAIT_TIMEOUT_MS,
            tools: Default::default(),
            mcp: Default::default(),
            serve: Default::default(),
            schedules: Vec::new(),
            profile: None,
        }
    }
}

/// Invalid configuration: names the key and where its value came from,
/// never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}` (from {origin}): {message}")]
    Invalid {
        key: &'static str,
        origin: String,
        message: String,
    },
    /// `hint` is a suggestion ("did you mean `concurrency`?") or where the
    /// keys are listed.
    #[error("invalid configuration: unknown key `{key}` (from {origin}): {hint}")]
    UnknownKey {
        key: String,
        origin: String,
        hint: String,
    },
    #[error("invalid configuration: TOOLQ_PROFILE={0:?} is no profile: expected development, testing or production")]
    UnknownProfile(String),
    #[error("invalid configuration: {var}: cannot read {path}: {reason}")]
    SecretFile {
        var: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("invalid configuration: {0} and {1} are both set: keep one")]
    Conflict(&'static str, &'static str),
    #[error(
        "invalid configuration: the {profile} profile refuses `{key}` (from {origin}): {message}"
    )]
    Refused {
        profile: Profile,
        key: &'static str,
        origin: String,
        message: String,
    },
}

/// Values given as command-line flags; they override everything else.
#[derive(Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// How long a write waits for `wait_replicas` replicas.
    pub fn wait_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.wait_timeout_ms)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &crate::spec::mask_url(&self.redis_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("redis_cluster_nodes", &self.redis_cluster_nodes)
            .field("allow_insecure_redis", &self.allow_insecure_redis)
            .field("allow_evicting_redis", &self.allow_evicting_redis)
            .field("profile", &self.profile)
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("http_addr", &self.http_addr)
            .field("log_format", &self.log_format)
            .field("shutdown_grace_s", &self.shutdown_grace_s)
            .field("result_ttl_s", &self.result_ttl_s)
            .field("max_attempts", &self.max_attempts)
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(crate::spec::mask_url),
            )
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
            .field("http_addr", &self.http_addr)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl Config {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }
    /// How old the heartbeat of a worker without connections must be before
    /// it is declared dead; `None` when that detection is off.
    pub fn disconnected_timeout(&self) -> Option<Duration> {
        (self.disconnect_grace_ms > 0).then(|| {
            Duration::from_millis(
                self.heartbeat_interval_ms
                    .saturating_add(self.disconnect_grace_ms),
            )
            .min(self.heartbeat_timeout())
        })
    }
    pub fn dead_max_age(&self) -> Duration {
        Duration::from_secs(self.dead_max_age_s)
    }
}

/// The Redis URL as it may be shown: its password masked.
fn masked_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::spec::mask_url(url))
}

/// Accepts `["a", "b"]` or `"a,b"` (the usual shape of an env variable).
fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_output_masks_the_redis_password() {
        let config = Config {
            redis_url: "redis://u:s3cret@host:6379".into(),
            ..Config::default()
        };
        let text = format!("{config:?}");
        assert!(
            !text.contains("s3cret") && text.contains("u:***@host"),
            "{text}"
        );
        let o = Overrides {
            redis_url: Some("redis://:s3cret@h".into()),
            ..Overrides::default()
        };
        assert!(!format!("{o:?}").contains("s3cret"));
    }
}

#[cfg(test)]
mod disconnect_tests {
    use super::*;

    #[test]
    fn a_worker_without_connections_is_dead_past_the_interval_plus_the_grace() {
        let config = Config::default();
        assert_eq!(
            config.disconnected_timeout(),
            Some(Duration::from_millis(1250))
        );
        // Never later than the heartbeat timeout; 0 turns it off.
        let late = Config {
            disconnect_grace_ms: 60_000,
            ..Config::default()
        };
        assert_eq!(late.disconnected_timeout(), Some(late.heartbeat_timeout()));
        let off = Config {
            disconnect_grace_ms: 0,
            ..Config::default()
        };
        assert_eq!(off.disconnected_timeout(), None);
    }
}
