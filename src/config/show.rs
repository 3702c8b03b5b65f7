//! The effective configuration as `toolq config` shows it: one row per key,
//! with its value and where it came from. Values are masked on the way out:
//! the Redis URL's password, any key named like a secret (`*key*`,
//! `*secret*`, `*password*`, `*token*`…) that holds a value rather than a
//! path (`*_file`), and header values written in the file (an `env:NAME` or
//! `file:PATH` reference is shown, it is not the secret).

use serde::Serialize;
use serde_json::Value;

use super::variables::{ENV_LABEL, PROFILE};
use super::{Config, Explained};
use crate::spec::mask_url;

/// What a masked value is shown as.
const MASK: &str = "***";

/// One row of `toolq config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Dotted, as in `TOOLQ_` names: `serve.addr`, `tools.weather.api_key`.
    #[serde(skip)]
    pub key: String,
    /// `null` when unset.
    pub value: Value,
    pub source: String,
}

impl Explained {
    /// Every key with its effective value (masked) and source, the profile
    /// first.
    pub fn entries(&self) -> Vec<Entry> {
        let profile = Entry {
            key: "profile".into(),
            value: self
                .config
                .profile
                .map_or(Value::Null, |p| Value::from(p.name())),
            source: match self.config.profile {
                Some(_) => format!("{ENV_LABEL}{PROFILE}"),
                None => "default".into(),
            },
        };
        let rows = leaves(tree(&self.config))
            .into_iter()
            .map(|(key, value)| Entry {
                source: self.source(&key),
                value: mask(&key, value),
                key,
            });
        std::iter::once(profile).chain(rows).collect()
    }
}

/// Every key a configuration has without user-named sections (their
/// entries' keys depend on the names): the known keys for suggestions.
pub(super) fn known_keys() -> Vec<String> {
    leaves(tree(&Config::default()))
        .into_iter()
        .filter(|(_, v)| !v.is_object())
        .map(|(k, _)| k)
        .collect()
}

/// The configuration as JSON; `Config`'s `Serialize` already masks the
/// Redis URL and `Secret`s.
fn tree(config: &Config) -> Value {
    serde_json::to_value(config).unwrap_or_default()
}

/// `(dotted key, value)` for every leaf: scalars, arrays, and empty tables.
fn leaves(value: Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

fn mask(key: &str, value: Value) -> Value {
    let Value::String(text) = value else {
        return value;
    };
    let mut parts = key.rsplit('.');
    let name = parts.next().unwrap_or_default();
    let parent = parts.next().unwrap_or_default();
    let shown = if parent == "headers" {
        let reference = text.starts_with("env:") || text.starts_with("file:");
        if reference {
            text
        } else {
            MASK.to_owned()
        }
    } else if name == "url" || name.ends_with("_url") {
        mask_url(&text)
    } else if names_a_secret(name) {
        MASK.to_owned()
    } else {
        text
    };
    Value::String(shown)
}

/// A name like `api_key`, `jwt_secret` or `GITHUB_TOKEN`, but not one that
/// holds a path (`jwt_secret_file`).
fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let holds_path = ["_file", "_path", "_dir"].iter().any(|s| name.ends_with(s));
    let secret = [
        "secret",
        "password",
        "passwd",
        "token",
        "key",
        "credential",
        "auth",
    ];
    !holds_path && secret.iter().any(|s| name.contains(s))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::variables::Environment;
    use crate::config::Overrides;

    fn value_of<'a>(entries: &'a [Entry], key: &str) -> &'a Entry {
        entries
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no {key} in {entries:?}"))
    }

    #[test]
    fn every_value_comes_with_its_source_and_no_secret_shows() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("toolq.toml");
        std::fs::write(
            &main,
            r#"
            concurrency = 3
            [serve]
            jwt_secret_file = "/run/secrets/jwt"
            [tools.http.upper]
            url = "https://user:hunter2@api.example/upper"
            headers = { Authorization = "Bearer literal-token", X-Key = "env:UPPER_KEY" }
            [mcp.servers.files]
            command = ["files-server"]
            env = { GITHUB_TOKEN = "ghp_abc", LOG_LEVEL = "info" }
            "#,
        )
        .unwrap();
        let env = Environment::from_pairs(
            [
                ("TOOLQ_REDIS_URL", "redis://worker:s3cret@127.0.0.1:6379"),
                ("OPENWEATHER_API_KEY", "weatherkey123"),
                ("TOOLQ_PROFILE", "development"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let overrides = Overrides {
            log_format: Some(crate::config::LogFormat::Json),
            ..Overrides::default()
        };
        let loaded = Explained::load(Some(&main), &overrides, &env).unwrap();
        let entries = loaded.entries();
        let all = serde_json::to_string(&entries).unwrap();
        for secret in [
            "s3cret",
            "weatherkey123",
            "hunter2",
            "literal-token",
            "ghp_abc",
        ] {
            assert!(!all.contains(secret), "{secret} shown: {all}");
        }

        let row = |key| value_of(&entries, key);
        assert_eq!(row("profile").value, json!("development"));
        assert_eq!(row("profile").source, "environment variable TOOLQ_PROFILE");
        assert_eq!(
            row("redis_url").value,
            json!("redis://worker:***@127.0.0.1:6379")
        );
        assert_eq!(
            row("redis_url").source,
            "environment variable TOOLQ_REDIS_URL"
        );
        assert_eq!(row("concurrency").value, json!(3));
        assert!(row("concurrency").source.starts_with("TOML file "));
        assert!(row("concurrency").source.ends_with("toolq.toml"));
        assert_eq!(row("log_format").source, "command-line flag --log-format");
        assert_eq!(row("shutdown_grace_s").source, "default");
        assert_eq!(row("tools.weather.api_key").value, json!("***"));
        assert_eq!(
            row("tools.weather.api_key").source,
            "environment variable OPENWEATHER_API_KEY"
        );
        assert_eq!(
            row("serve.jwt_secret_file").value,
            json!("/run/secrets/jwt")
        );
        assert_eq!(row("serve.jwks_file").value, Value::Null);
        assert_eq!(
            row("tools.http.upper.headers.X-Key").value,
            json!("env:UPPER_KEY")
        );
        assert_eq!(row("mcp.servers.files.env.LOG_LEVEL").value, json!("info"));
        assert_eq!(row("tools.weather.timeout_ms").value, json!(10_000));
    }

    #[test]
    fn known_keys_cover_the_sections() {
        let keys = known_keys();
        for key in [
            "concurrency",
            "serve.addr",
            "tools.weather.cache_ttl_s",
            "allow_insecure_redis",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }
        assert!(!keys.iter().any(|k| k == "profile" || k == "tools.http"));
    }

    #[test]
    fn masks_by_name_but_not_paths() {
        let m = |k: &str, v: &str| mask(k, json!(v));
        assert_eq!(m("tools.weather.api_key", "abc"), json!("***"));
        assert_eq!(m("serve.jwt_secret_file", "/run/jwt"), json!("/run/jwt"));
        assert_eq!(m("x.headers.Accept", "text/plain"), json!("***"));
        assert_eq!(
            m("x.headers.Authorization", "file:/run/t"),
            json!("file:/run/t")
        );
        assert_eq!(m("x.env.DB_PASSWORD", "pw"), json!("***"));
        assert_eq!(m("redis_url", "redis://:pw@h"), json!("redis://:***@h"));
        assert_eq!(mask("serve.no_auth", json!(true)), json!(true));
    }
}
