//! The environment as configuration reads it. `TOOLQ_<KEY>` sets a key
//! (`__` for nesting); a few `TOOLQ_` names are not keys but belong to
//! loading itself, the scripts and the tests, and are listed here; any other
//! `TOOLQ_` name is an unknown key. Secrets can come from files instead:
//! `TOOLQ_REDIS_URL_FILE`, `TOOLQ_REDIS_PASSWORD_FILE` and
//! `OPENWEATHER_API_KEY_FILE` name a file whose content (less a trailing
//! newline) is the value.
//!
//! The environment is captured once per load, so one load sees one set of
//! variables and tests can hand in their own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile as FigmentProfile, Provider};

use super::ConfigError;

const PREFIX: &str = "TOOLQ_";
pub(super) const PROFILE: &str = "TOOLQ_PROFILE";
const REDIS_URL: &str = "TOOLQ_REDIS_URL";
const REDIS_URL_FILE: &str = "TOOLQ_REDIS_URL_FILE";
pub(super) const REDIS_PASSWORD_FILE: &str = "TOOLQ_REDIS_PASSWORD_FILE";
const WEATHER_KEY: &str = "OPENWEATHER_API_KEY";
const WEATHER_KEY_FILE: &str = "OPENWEATHER_API_KEY_FILE";

/// How a layer from a variable is named: `environment variable TOOLQ_QUEUES`.
pub(super) const ENV_LABEL: &str = "environment variable ";

/// `TOOLQ_` names that are not configuration keys: loading's own, then
/// those of the test suite, the fault tests, the MCP fixtures, the ops
/// checks and the soak script.
pub const OTHER_VARIABLES: &[&str] = &[
    PROFILE,
    REDIS_URL_FILE,
    REDIS_PASSWORD_FILE,
    "TOOLQ_ENABLE_TEST_TOOLS",
    "TOOLQ_FAULT_SCALE",
    "TOOLQ_MCP_FIXTURES",
    "TOOLQ_PROMETHEUS",
    "TOOLQ_OPS_VENV",
    "TOOLQ_OPS_NPM",
    "TOOLQ_SOAK_BIN",
];

/// Prefixes of `TOOLQ_` names left to tests and benchmarks.
pub const OTHER_VARIABLE_PREFIXES: &[&str] = &["TOOLQ_TEST_", "TOOLQ_BENCH_"];

/// A snapshot of the variables configuration reads.
#[derive(Debug, Clone, Default)]
pub(super) struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    pub fn of_process() -> Environment {
        Environment::from_pairs(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }))
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Environment {
        Environment {
            vars: pairs.into_iter().collect(),
        }
    }

    /// A variable by name, any case (as figment's own lookup); an empty
    /// value counts as unset, the way compose passes an unset one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, v)| k.trim().eq_ignore_ascii_case(name) && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The layers the environment adds, lowest first: the OpenWeather key
    /// (from its variable or file), the `TOOLQ_` keys, then the Redis URL
    /// from a file.
    pub fn layers(&self) -> Result<Vec<Layer>, ConfigError> {
        let mut layers = Vec::new();
        match (self.get(WEATHER_KEY), self.get(WEATHER_KEY_FILE)) {
            (Some(_), Some(_)) => return Err(ConfigError::Conflict(WEATHER_KEY, WEATHER_KEY_FILE)),
            (Some(key), None) => layers.push(Layer::variable(
                WEATHER_KEY,
                "tools.weather.api_key".into(),
                key,
            )),
            (None, Some(path)) => layers.push(Layer::file(
                WEATHER_KEY_FILE,
                path,
                "tools.weather.api_key",
            )?),
            (None, None) => {}
        }
        for (name, value) in &self.vars {
            if let Some(key) = config_key(name) {
                layers.push(Layer::variable(name, key, value));
            }
        }
        if let Some(path) = self.get(REDIS_URL_FILE) {
            if self.get(REDIS_URL).is_some() {
                return Err(ConfigError::Conflict(REDIS_URL, REDIS_URL_FILE));
            }
            layers.push(Layer::file(REDIS_URL_FILE, path, "redis_url")?);
        }
        Ok(layers)
    }

    /// The password `TOOLQ_REDIS_PASSWORD_FILE` names, and that file.
    pub fn redis_password(&self) -> Result<Option<(PathBuf, String)>, ConfigError> {
        self.get(REDIS_PASSWORD_FILE)
            .map(|path| Ok((PathBuf::from(path), read_secret(REDIS_PASSWORD_FILE, path)?)))
            .transpose()
    }
}

/// The key a `TOOLQ_` variable sets (`TOOLQ_TOOLS__WEATHER__BASE_URL` →
/// `tools.weather.base_url`); `None` for other names and the non-keys. A
/// name with an empty part (`TOOLQ_SERVE__`) keeps it, and fails as unknown.
fn config_key(name: &str) -> Option<String> {
    let name = name.trim();
    let upper = name.to_ascii_uppercase();
    if !upper.starts_with(PREFIX) || is_other_variable(&upper) {
        return None;
    }
    Some(name[PREFIX.len()..].to_ascii_lowercase().replace("__", "."))
}

/// Whether `name` (upper case) is a `TOOLQ_` variable that is not a key.
pub(super) fn is_other_variable(name: &str) -> bool {
    OTHER_VARIABLES.contains(&name) || OTHER_VARIABLE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The variable that sets `key`: `serve.addr` → `TOOLQ_SERVE__ADDR`.
pub(super) fn variable_of(key: &str) -> String {
    format!("{PREFIX}{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// A file's content less its trailing newline; the error names the variable
/// and the path, never the content.
fn read_secret(var: &'static str, path: &str) -> Result<String, ConfigError> {
    let fail = |reason: String| ConfigError::SecretFile {
        var,
        path: PathBuf::from(path),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(text.to_owned())
}

/// One value from outside the configuration files, named as the user knows
/// its origin ("environment variable TOOLQ_QUEUES"), so messages and
/// `toolq config` can say where it came from.
pub(super) struct Layer {
    label: String,
    key: String,
    value: Value,
}

impl Layer {
    /// A variable's value, read as figment reads variables (`10` is a
    /// number, `true` a boolean, anything else a string).
    fn variable(name: &str, key: String, value: &str) -> Layer {
        Layer {
            label: format!("{ENV_LABEL}{}", name.trim()),
            key,
            value: value.parse().unwrap_or_else(|_| Value::from(value)),
        }
    }

    /// A secret read from the file `var` names, kept a string whatever it
    /// looks like.
    fn file(var: &'static str, path: &str, key: &str) -> Result<Layer, ConfigError> {
        Ok(Layer {
            label: format!("file {path} ({var})"),
            key: key.to_owned(),
            value: Value::from(read_secret(var, path)?),
        })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.label.clone())
    }

    fn data(&self) -> Result<Map<FigmentProfile, Dict>, figment::Error> {
        // An empty part (`TOOLQ_SERVE__`) becomes a key figment can still
        // nest, so serde reports it as unknown instead of it vanishing.
        let key = self
            .key
            .split('.')
            .map(|part| if part.is_empty() { "_" } else { part })
            .collect::<Vec<_>>()
            .join(".");
        let dict = figment::util::nest(&key, self.value.clone())
            .into_dict()
            .unwrap_or_default();
        Ok(FigmentProfile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_keys_and_non_keys_are_left_out() {
        assert_eq!(
            config_key("TOOLQ_CONCURRENCY").as_deref(),
            Some("concurrency")
        );
        assert_eq!(
            config_key("toolq_tools__weather__base_url").as_deref(),
            Some("tools.weather.base_url")
        );
        assert_eq!(config_key("TOOLQ_PROFILE"), None);
        assert_eq!(config_key("TOOLQ_MCP_FIXTURES"), None);
        assert_eq!(config_key("TOOLQ_TEST_ANYTHING"), None);
        assert_eq!(config_key("OPENWEATHER_API_KEY"), None);
        assert_eq!(variable_of("serve.addr"), "TOOLQ_SERVE__ADDR");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_errors_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(read_secret(REDIS_PASSWORD_FILE, path).unwrap(), "s3cret");

        std::fs::write(&file, "\n").unwrap();
        let e = read_secret(REDIS_PASSWORD_FILE, path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(REDIS_PASSWORD_FILE) && e.contains("empty"),
            "{e}"
        );

        let missing = dir.path().join("nope");
        let e = read_secret(REDIS_URL_FILE, missing.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(REDIS_URL_FILE) && e.contains("nope"), "{e}");
    }

    /// Every `TOOLQ_` name the repository's scripts, deployment files, docs
    /// and tests use. `src/config` and `tests/config_cli.rs` are left out:
    /// they spell unknown names on purpose.
    fn variables_used_in_the_repository() -> std::collections::BTreeSet<String> {
        fn scan(path: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
            let skip = ["target", ".git", "config_cli.rs"];
            if skip.iter().any(|s| path.ends_with(s)) || path.ends_with("src/config") {
                return;
            }
            if path.is_dir() {
                for entry in std::fs::read_dir(path).unwrap().flatten() {
                    scan(&entry.path(), out);
                }
                return;
            }
            let Ok(text) = std::fs::read_to_string(path) else {
                return;
            };
            for (at, _) in text.match_indices(PREFIX) {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `TOOLQ_MCP__SERVERS__<NAME>__<KEY>` in prose: a pattern.
                if !name.ends_with('_') {
                    out.insert(name);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = std::collections::BTreeSet::new();
        for part in [
            "README.md",
            ".env.example",
            "docker-compose.yml",
            "Dockerfile",
            "config",
            "ops",
            "scripts",
            "examples",
            "tests",
            "src",
        ] {
            scan(&root.join(part), &mut out);
        }
        out
    }

    #[test]
    fn every_variable_the_repository_uses_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("toolq.toml");
        std::fs::write(&main, "").unwrap();
        // The README shows this one failing, on purpose.
        let typos = ["TOOLQ_CONCURENCY"];
        let used = variables_used_in_the_repository();
        for expected in [
            "TOOLQ_REDIS_URL",
            "TOOLQ_MCP_FIXTURES",
            "TOOLQ_ENABLE_TEST_TOOLS",
        ] {
            assert!(
                used.contains(expected),
                "the scan missed {expected}: {used:?}"
            );
        }
        for name in used.into_iter().filter(|n| !typos.contains(&n.as_str())) {
            let env = Environment::from_pairs([(name.clone(), "1".to_owned())]);
            let result = super::super::Explained::load(
                Some(&main),
                &super::super::Overrides::default(),
                &env,
            );
            assert!(
                !matches!(result, Err(ConfigError::UnknownKey { .. })),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn a_value_and_its_file_together_are_refused() {
        let env = Environment::from_pairs([
            (WEATHER_KEY.to_owned(), "k".to_owned()),
            (WEATHER_KEY_FILE.to_owned(), "/nope".to_owned()),
        ]);
        assert!(matches!(env.layers(), Err(ConfigError::Conflict(..))));
        let env = Environment::from_pairs([
            (REDIS_URL.to_owned(), "redis://h".to_owned()),
            (REDIS_URL_FILE.to_owned(), "/nope".to_owned()),
        ]);
        assert!(matches!(env.layers(), Err(ConfigError::Conflict(..))));
    }
}
