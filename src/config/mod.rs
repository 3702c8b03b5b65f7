//! Configuration: built-in defaults, then `config/toolq.toml` (or `--config
//! FILE`), then `TOOLQ_*` environment variables (`__` for nesting), then
//! command-line flags. Every default is a named constant here and is
//! mirrored, commented, in `config/toolq.toml`. The checks serde cannot
//! make, and the messages naming where a bad value came from, are in
//! `validate`.

mod serve;
mod validate;

pub use serve::ServeConfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_CONFIG_FILE: &str = "config/toolq.toml";
pub const DEFAULT_QUEUE: &str = "default";
pub const DEFAULT_CONCURRENCY: usize = 10;
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:9464";
/// Fits inside the usual 30 s container stop timeout.
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 25;
pub const DEFAULT_RESULT_TTL_S: u64 = 3600;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 5000;
/// A job whose worker died this many times is buried as poison.
pub const DEFAULT_MAX_RECOVERIES: u32 = 3;
pub const DEFAULT_DEAD_MAX_JOBS: u64 = 100_000;
pub const DEFAULT_DEAD_MAX_AGE_S: u64 = 7 * 24 * 3600;
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 1000;
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;
/// Most jobs taken per fetch round trip (bounded by free permits too).
pub const DEFAULT_FETCH_BATCH: usize = 100;
/// Most job outcomes written per ack round trip.
pub const DEFAULT_ACK_BATCH: usize = 200;
/// How long a unique job's key is held at most: the worker releases it when
/// the job succeeds or dies, so this only bounds a lock whose job was lost.
pub const DEFAULT_UNIQUE_TTL_S: u64 = 3600;
/// Producers wait while a queue holds this many pending jobs; 0 = no cap.
pub const DEFAULT_MAX_PENDING: u64 = 0;

/// Log output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Everything a worker or the CLI needs to know.
/// `Debug` is written by hand below: the Redis URL may hold a password.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS.
    pub redis_url: String,
    /// PEM file with the CA that signed the Redis server's certificate, when
    /// it is not in the system roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Queues to serve, in priority order; `name=weight` on any of them
    /// switches from strict order to weighted random order.
    #[serde(deserialize_with = "list_or_csv")]
    pub queues: Vec<String>,
    /// Most tool executions at once in one process.
    pub concurrency: usize,
    /// Side port for health and metrics, or `off`.
    pub http_addr: String,
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
    pub max_recoveries: u32,
    pub dead_max_jobs: u64,
    pub dead_max_age_s: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub fetch_batch: usize,
    pub ack_batch: usize,
    /// Producers (`toolq submit`, `enqueue`) wait while the queue holds this
    /// many pending jobs, instead of growing Redis without bound; 0 = no cap.
    pub max_pending: u64,
    /// Longest a unique job's key stays held (`unique_key`).
    pub unique_ttl_s: u64,
    /// Per-tool settings (`[tools.weather]`).
    pub tools: crate::tools::ToolsConfig,
    /// MCP servers whose tools the worker runs (`[mcp.servers.<name>]`).
    pub mcp: crate::tools::mcp::McpConfig,
    /// The gateway (`toolq serve`).
    pub serve: ServeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_url: DEFAULT_REDIS_URL.into(),
            redis_ca_file: None,
            queues: vec![DEFAULT_QUEUE.into()],
            concurrency: DEFAULT_CONCURRENCY,
            http_addr: DEFAULT_HTTP_ADDR.into(),
            log_format: LogFormat::Pretty,
            shutdown_grace_s: DEFAULT_SHUTDOWN_GRACE_S,
            result_ttl_s: DEFAULT_RESULT_TTL_S,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_payload_bytes: crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            max_json_depth: crate::job::DEFAULT_MAX_JSON_DEPTH,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            max_recoveries: DEFAULT_MAX_RECOVERIES,
            dead_max_jobs: DEFAULT_DEAD_MAX_JOBS,
            dead_max_age_s: DEFAULT_DEAD_MAX_AGE_S,
            backoff_base_ms: DEFAULT_BACKOFF_BASE_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            fetch_batch: DEFAULT_FETCH_BATCH,
            ack_batch: DEFAULT_ACK_BATCH,
            max_pending: DEFAULT_MAX_PENDING,
            unique_ttl_s: DEFAULT_UNIQUE_TTL_S,
            tools: Default::default(),
            mcp: Default::default(),
            serve: Default::default(),
        }
    }
}

/// Invalid configuration: names the key and where its value came from.
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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("redis_url", &crate::spec::mask_url(&self.redis_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
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
    /// Loads and validates the configuration. `file` is `--config`; without
    /// it `config/toolq.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let path = match file {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(DEFAULT_CONFIG_FILE),
        };
        // Defaults come from `#[serde(default)]`, so they need no provider.
        let figment = Figment::new()
            .merge(Toml::file(&path))
            .merge(
                Env::raw()
                    .only(&["OPENWEATHER_API_KEY"])
                    .map(|_| "tools.weather.api_key".into()),
            )
            .merge(Env::prefixed("TOOLQ_").split("__"))
            .merge(Serialized::defaults(overrides.clone()));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(validate::describe(&e, &path)))?;
        config.validate(&|key| validate::source_of(&figment, key))?;
        Ok(config)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }
    pub fn dead_max_age(&self) -> Duration {
        Duration::from_secs(self.dead_max_age_s)
    }
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
