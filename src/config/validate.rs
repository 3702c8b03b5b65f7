//! Validation: the checks serde cannot make, and error messages that name
//! the key and where its value came from (file, variable, flag or default)
//! without echoing a secret.

use std::path::Path;

use figment::error::Kind;
use figment::Figment;

use super::{unknown, Config, ConfigError, MAX_WAIT_REPLICAS, MAX_WAIT_TIMEOUT_MS};

impl Config {
    /// Each seed node is `host:port`, and a cluster is not found through
    /// sentinels.
    fn check_cluster_nodes(&self) -> Result<(), String> {
        if self.redis_cluster_nodes.is_empty() {
            return Ok(());
        }
        if crate::spec::SentinelUrl::is_sentinel(&self.redis_url) {
            return Err(
                "cannot be combined with a Sentinel redis_url: with cluster nodes, \
                        redis_url gives only the credentials and TLS (redis:// or rediss://)"
                    .into(),
            );
        }
        for node in &self.redis_cluster_nodes {
            let port = node
                .trim()
                .rsplit_once(':')
                .map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port > 0) {
                return Err(format!("{node:?} is not host:port"));
            }
        }
        Ok(())
    }

    /// Checks values serde cannot: ranges and relations between keys.
    pub fn validate(&self, source: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let fail = |key: &'static str, message: String| ConfigError::Invalid {
            key,
            origin: source(key),
            message,
        };
        if !(1..=100_000).contains(&self.concurrency) {
            return Err(fail(
                "concurrency",
                format!("must be 1..=100000, got {}", self.concurrency),
            ));
        }
        if self.prefetch > 100_000 {
            return Err(fail(
                "prefetch",
                format!("must be 0..=100000, got {}", self.prefetch),
            ));
        }
        if self.queues.is_empty() {
            return Err(fail("queues", "must name at least one queue".into()));
        }
        for spec in &self.queues {
            crate::spec::QueueSpec::parse(spec).map_err(|m| fail("queues", m))?;
        }
        if crate::spec::SentinelUrl::is_sentinel(&self.redis_url) {
            crate::spec::SentinelUrl::parse(&self.redis_url).map_err(|why| {
                let url = crate::spec::mask_url(&self.redis_url);
                fail("redis_url", format!("{url} {why}"))
            })?;
        } else if !(self.redis_url.starts_with("redis://")
            || self.redis_url.starts_with("rediss://")
            || self.redis_url.starts_with("unix://")
            || self.redis_url.starts_with("redis+unix://"))
        {
            return Err(fail(
                "redis_url",
                format!(
                    "must start with redis://, rediss:// or redis+sentinel://, got {}",
                    crate::spec::mask_url(&self.redis_url)
                ),
            ));
        }
        self.check_cluster_nodes()
            .map_err(|m| fail("redis_cluster_nodes", m))?;
        if self.wait_replicas > MAX_WAIT_REPLICAS {
            return Err(fail(
                "wait_replicas",
                format!(
                    "must be 0..={MAX_WAIT_REPLICAS} (0 = do not wait), got {}",
                    self.wait_replicas
                ),
            ));
        }
        if !(1..=MAX_WAIT_TIMEOUT_MS).contains(&self.wait_timeout_ms) {
            return Err(fail(
                "wait_timeout_ms",
                format!(
                    "must be 1..={MAX_WAIT_TIMEOUT_MS} (it must end well before a Redis call times out), got {}",
                    self.wait_timeout_ms
                ),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.schedules {
            schedule
                .validate()
                .map_err(|e| fail("schedules", e.to_string()))?;
            if !names.insert(schedule.name.as_str()) {
                return Err(fail(
                    "schedules",
                    format!("schedule {:?} is defined twice", schedule.name),
                ));
            }
        }
        for (name, server) in &self.mcp.servers {
            if let Some(problem) = server.problem() {
                return Err(fail("mcp.servers", format!("server `{name}`: {problem}")));
            }
        }
        if self.http_addr.parse::<crate::spec::HttpAddr>().is_err() {
            return Err(fail(
                "http_addr",
                format!("must be host:port or `off`, got {:?}", self.http_addr),
            ));
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms < 2 * self.heartbeat_interval_ms
        {
            return Err(fail(
                "heartbeat_timeout_ms",
                "must be at least twice heartbeat_interval_ms (and the interval above 0)".into(),
            ));
        }
        let positive: [(&'static str, u64); 15] = [
            ("http_max_connections", self.http_max_connections as u64),
            ("http_header_timeout_ms", self.http_header_timeout_ms),
            ("serve.max_connections", self.serve.max_connections as u64),
            ("serve.header_timeout_ms", self.serve.header_timeout_ms),
            ("serve.idle_timeout_ms", self.serve.idle_timeout_ms),
            ("max_attempts", self.max_attempts as u64),
            ("max_payload_bytes", self.max_payload_bytes as u64),
            ("max_json_depth", self.max_json_depth as u64),
            ("fetch_batch", self.fetch_batch as u64),
            ("ack_batch", self.ack_batch as u64),
            ("dead_max_jobs", self.dead_max_jobs),
            ("dead_max_bytes", self.dead_max_bytes),
            ("dead_max_payload_bytes", self.dead_max_payload_bytes as u64),
            ("max_recoveries", self.max_recoveries as u64),
            ("unique_ttl_s", self.unique_ttl_s),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(fail(key, "must be at least 1".into()));
            }
        }
        if self.result_ttl_s > crate::job::MAX_RESULT_TTL_S {
            return Err(fail(
                "result_ttl_s",
                format!("must be at most {}", crate::job::MAX_RESULT_TTL_S),
            ));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(fail(
                "backoff_base_ms",
                "must not exceed backoff_max_ms".into(),
            ));
        }
        Ok(())
    }
}

/// Where a key's value came from, e.g. "environment variable TOOLQ_QUEUES".
pub(super) fn source_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(m) => origin(m, key),
        None => "default".into(),
    }
}

/// Names a provider as a user knows it. The flags are the only values set in
/// code (`Serialized`), whose figment name would be a Rust type and a line;
/// the variables and secret files are layers labelled by `variables`.
pub(super) fn origin(m: &figment::Metadata, key: &str) -> String {
    match &m.source {
        Some(figment::Source::Code(_)) => match flag_of(key) {
            Some(flag) => format!("command-line flag {flag}"),
            None => "command-line flag".into(),
        },
        Some(src) => format!("{} {}", m.name, src),
        None => m.name.to_string(),
    }
}

/// The flag that sets `key` (see `Overrides`).
fn flag_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "redis_url" => "--redis-url",
        "queues" => "--queue",
        "concurrency" => "--concurrency",
        "http_addr" => "--http-addr",
        "log_format" => "--log-format",
        _ => return None,
    })
}

/// A figment error as a `ConfigError`: an unknown key first (its own
/// variant, with a suggestion), else every problem with its key and source.
pub(super) fn from_figment(e: &figment::Error, figment: &Figment, path: &Path) -> ConfigError {
    unknown::first(e, figment).unwrap_or_else(|| ConfigError::Parse(describe(e, path)))
}

/// A TOML syntax error without the excerpt of the file it quotes (`2 | api_key
/// = s3cret`, with a caret line under it): the line at fault may hold a
/// secret. The position and the reason stay.
fn without_excerpt(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            let rest = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit());
            !rest.trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe(e: &figment::Error, path: &Path) -> String {
    let mut out = Vec::new();
    for err in e.clone() {
        let key = err.path.join(".");
        let source = err
            .metadata
            .as_ref()
            .map(|m| origin(m, &key))
            .unwrap_or_else(|| path.display().to_string());
        // Never echo a value that could be a secret (the Redis URL).
        let secret = [
            "url", "key", "secret", "password", "token", "headers", "env",
        ]
        .iter()
        .any(|s| key.contains(s));
        let kind = match &err.kind {
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                let expected = expected_text(&key, expected);
                if secret {
                    format!("expected {expected}")
                } else {
                    format!("expected {expected}, found {actual}")
                }
            }
            kind if secret => kind
                .to_string()
                .split(" found ")
                .next()
                .unwrap_or("invalid value")
                .to_owned(),
            kind => without_excerpt(&kind.to_string()),
        };
        out.push(if key.is_empty() {
            format!("{kind} (from {source})")
        } else {
            format!("`{key}` (from {source}): {kind}")
        });
    }
    out.join("; ")
}

/// Keys that [`Config::validate`] requires to be at least 1.
const AT_LEAST_ONE: &[&str] = &[
    "concurrency",
    "http_max_connections",
    "http_header_timeout_ms",
    "serve.max_connections",
    "serve.header_timeout_ms",
    "serve.idle_timeout_ms",
    "heartbeat_interval_ms",
    "max_attempts",
    "max_payload_bytes",
    "max_json_depth",
    "fetch_batch",
    "ack_batch",
    "dead_max_jobs",
    "dead_max_bytes",
    "dead_max_payload_bytes",
    "max_recoveries",
    "unique_ttl_s",
];

/// What a key takes, in words rather than Rust's type names (`usize`).
fn expected_text(key: &str, expected: &str) -> String {
    let whole = |range: &str| {
        if AT_LEAST_ONE.contains(&key) {
            "a positive integer".to_owned()
        } else {
            range.to_owned()
        }
    };
    match expected {
        "u8" => whole("an integer from 0 to 255"),
        "u16" => whole("an integer from 0 to 65535"),
        "u32" | "u64" | "u128" | "usize" => whole("a non-negative integer"),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::load::Explained;
    use super::super::variables::Environment;
    use super::*;
    use crate::config::Overrides;

    fn load_with(vars: &[(&str, &str)]) -> String {
        let env = Environment::from_pairs(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("toolq.toml");
        std::fs::write(&file, "").unwrap();
        Explained::load(Some(&file), &Overrides::default(), &env)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_wrong_type_names_the_variable_and_says_what_it_takes_in_words() {
        let text = load_with(&[("TOOLQ_CONCURRENCY", "abc")]);
        assert!(text.contains("TOOLQ_CONCURRENCY"), "{text}");
        assert!(text.contains("expected a positive integer"), "{text}");
        assert!(!text.contains("usize"), "{text}");
        let text = load_with(&[("TOOLQ_BACKOFF_BASE_MS", "-5")]);
        assert!(text.contains("expected a non-negative integer"), "{text}");
    }

    /// Found by the `config` fuzz target: a TOML syntax error quoted the
    /// line at fault, secret and all.
    #[test]
    fn a_syntax_error_does_not_quote_the_line_that_holds_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("toolq.toml");
        for text in [
            "[tools.weather]\napi_key = S3cr3tPa55w0rd\n",
            "t#env OPENWEATHER_API_KEY=S3cr3tPa55w0rd\n",
            "redis_url = \"redis://:S3cr3tPa55w0rd@h\n",
        ] {
            std::fs::write(&file, text).unwrap();
            let env = Environment::from_pairs(Vec::new());
            let err = Explained::load(Some(&file), &Overrides::default(), &env)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("S3cr3t"), "{err}");
            assert!(err.contains("TOML parse error at line"), "{err}");
        }
    }

    #[test]
    fn cluster_nodes_are_checked_by_name() {
        for nodes in ["h", "h:7000,h:x", "h:0"] {
            let text = load_with(&[("TOOLQ_REDIS_CLUSTER_NODES", nodes)]);
            assert!(
                text.contains("`redis_cluster_nodes`") && text.contains("host:port"),
                "{nodes}: {text}"
            );
        }
        let text = load_with(&[
            ("TOOLQ_REDIS_CLUSTER_NODES", "h:7000,h:7001"),
            ("TOOLQ_REDIS_URL", "redis+sentinel://:s3cret@s1/mymaster"),
        ]);
        assert!(
            text.contains("Sentinel") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn wait_replicas_and_sentinel_urls_are_checked_by_name() {
        let text = load_with(&[("TOOLQ_WAIT_REPLICAS", "17")]);
        assert!(
            text.contains("`wait_replicas`") && text.contains("0..=16"),
            "{text}"
        );
        let text = load_with(&[("TOOLQ_WAIT_TIMEOUT_MS", "60000")]);
        assert!(text.contains("`wait_timeout_ms`"), "{text}");
        let text = load_with(&[("TOOLQ_REDIS_URL", "redis+sentinel://:s3cret@s1,s2")]);
        assert!(text.contains("names no service"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn a_wrong_type_of_a_secret_key_does_not_echo_the_value() {
        let text = load_with(&[("TOOLQ_REDIS_URL", "[\"redis://:s3cret@h\"]")]);
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn keys_that_must_be_at_least_one_are_refused_at_zero() {
        for key in AT_LEAST_ONE {
            let var = format!("TOOLQ_{}", key.to_uppercase());
            let text = load_with(&[(&var, "0")]);
            assert!(text.contains(key), "{key} = 0 is refused: {text}");
        }
    }
}
