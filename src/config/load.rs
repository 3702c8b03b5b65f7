//! Loading: the layers in order (defaults, the main file, the profile's
//! file, the environment, the flags), the Redis password read from its file,
//! then the checks. [`Explained`] keeps the layers, so each value can say
//! where it came from.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

use super::variables::{self, Environment};
use super::{validate, Config, ConfigError, Overrides, Profile, DEFAULT_CONFIG_FILE};

/// A loaded configuration and the layers it was built from.
pub struct Explained {
    pub config: Config,
    figment: Figment,
    /// The file `TOOLQ_REDIS_PASSWORD_FILE` named, when the password came
    /// from one.
    redis_password_file: Option<PathBuf>,
}

/// By hand: the layers hold secrets in the clear; `Config`'s own `Debug`
/// masks them.
impl std::fmt::Debug for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explained")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Loads and validates the configuration. `file` is `--config`; without
    /// it `config/toolq.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Ok(Config::explain(file, overrides)?.config)
    }

    /// As [`Config::load`], keeping where each value came from (`toolq config`).
    pub fn explain(file: Option<&Path>, overrides: &Overrides) -> Result<Explained, ConfigError> {
        Explained::load(file, overrides, &Environment::of_process())
    }
}

impl Explained {
    pub(super) fn load(
        file: Option<&Path>,
        overrides: &Overrides,
        env: &Environment,
    ) -> Result<Explained, ConfigError> {
        let path = match file {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(DEFAULT_CONFIG_FILE),
        };
        let profile = env
            .get(variables::PROFILE)
            .map(Profile::parse)
            .transpose()?;
        // Defaults come from `#[serde(default)]`, so they need no provider.
        let mut figment = Figment::new().merge(Toml::file(&path));
        if let Some(profile) = profile {
            figment = figment.merge(Toml::file(profile.file_next_to(&path)));
        }
        for layer in env.layers()? {
            figment = figment.merge(layer);
        }
        let figment = figment.merge(Serialized::defaults(overrides.clone()));
        let mut config: Config = figment
            .extract()
            .map_err(|e| validate::from_figment(&e, &figment, &path))?;
        config.profile = profile;
        let mut explained = Explained {
            config,
            figment,
            redis_password_file: None,
        };
        if let Some((file, password)) = env.redis_password()? {
            explained.redis_password_file = Some(file);
            explained.config.redis_url =
                crate::spec::with_password(&explained.config.redis_url, &password).map_err(
                    |message| ConfigError::Invalid {
                        key: "redis_url",
                        origin: explained.source("redis_url"),
                        message,
                    },
                )?;
        }
        let source = |key: &str| explained.source(key);
        explained.config.validate(&source)?;
        if let Some(profile) = profile {
            profile.refuse_insecure(&explained.config, &source)?;
        }
        Ok(explained)
    }

    /// Where `key`'s value came from: "default", "TOML file …",
    /// "environment variable TOOLQ_…", "command-line flag --…", or a file a
    /// `*_FILE` variable named.
    pub fn source(&self, key: &str) -> String {
        let origin = validate::source_of(&self.figment, key);
        match &self.redis_password_file {
            Some(file) if key == "redis_url" => format!(
                "{origin}, password from file {} ({})",
                file.display(),
                variables::REDIS_PASSWORD_FILE
            ),
            _ => origin,
        }
    }
}

/// Loads `file` with these variables as the whole environment and no flags:
/// the configuration fuzz target's entry (`src/fuzz/config.rs`).
#[cfg(feature = "test-tools")]
pub(crate) fn load_with_env(
    file: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let env = Environment::from_pairs(vars);
    Ok(Explained::load(Some(file), &Overrides::default(), &env)?.config)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::LogFormat;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// A main file and, beside it, a production profile file.
    fn files(main: &str, production: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("toolq.toml"), main).unwrap();
        std::fs::write(dir.path().join("production.toml"), production).unwrap();
        dir
    }

    fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Explained, ConfigError> {
        Explained::load(
            Some(&dir.join("toolq.toml")),
            &Overrides::default(),
            &env(vars),
        )
    }

    #[test]
    fn the_profile_file_sits_between_the_main_file_and_the_environment() {
        let dir = files(
            "concurrency = 3\nmax_attempts = 7\nlog_format = \"pretty\"\n",
            "concurrency = 4\nlog_format = \"json\"\n",
        );
        let without = load(dir.path(), &[]).unwrap();
        assert_eq!(without.config.concurrency, 3);
        assert_eq!(without.config.profile, None);

        let vars = [
            ("TOOLQ_PROFILE", "production"),
            ("TOOLQ_LOG_FORMAT", "pretty"),
        ];
        let with = load(dir.path(), &vars).unwrap();
        assert_eq!(with.config.profile, Some(Profile::Production));
        assert_eq!(
            with.config.concurrency, 4,
            "the profile's file wins over the main one"
        );
        assert_eq!(
            with.config.max_attempts, 7,
            "what the profile leaves is the main file's"
        );
        assert_eq!(with.config.log_format, LogFormat::Pretty, "variables win");
        assert!(with.source("concurrency").ends_with("production.toml"));
        assert_eq!(
            with.source("log_format"),
            "environment variable TOOLQ_LOG_FORMAT"
        );
        assert_eq!(with.source("shutdown_grace_s"), "default");
    }

    #[test]
    fn an_unknown_profile_is_an_error() {
        let dir = files("", "");
        let e = load(dir.path(), &[("TOOLQ_PROFILE", "prod")]);
        assert!(matches!(e, Err(ConfigError::UnknownProfile(p)) if p == "prod"));
    }

    #[test]
    fn the_shipped_profiles_load() {
        let main = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/toolq.toml");
        for profile in Profile::ALL {
            let vars = env(&[("TOOLQ_PROFILE", profile.name())]);
            let loaded = Explained::load(Some(&main), &Overrides::default(), &vars)
                .unwrap_or_else(|e| panic!("{profile}: {e}"));
            assert_eq!(loaded.config.profile, Some(profile));
        }
    }

    #[test]
    fn production_refuses_a_gateway_without_authentication() {
        let dir = files("[serve]\nno_auth = true\n", "");
        assert!(load(dir.path(), &[("TOOLQ_PROFILE", "development")]).is_ok());
        let e = load(dir.path(), &[("TOOLQ_PROFILE", "production")]).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                ConfigError::Refused {
                    key: "serve.no_auth",
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("production") && text.contains("toolq.toml"),
            "{text}"
        );
    }

    #[test]
    fn production_refuses_a_clear_text_redis_password_unless_allowed() {
        let dir = files("redis_url = \"redis://w:s3cret@redis.internal:6379\"\n", "");
        assert!(load(dir.path(), &[]).is_ok(), "only production refuses it");
        let production = [("TOOLQ_PROFILE", "production")];
        let e = load(dir.path(), &production).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                ConfigError::Refused {
                    key: "redis_url",
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("redis.internal") && text.contains("allow_insecure_redis"));
        assert!(!text.contains("s3cret"), "{text}");

        let allowed = [
            ("TOOLQ_PROFILE", "production"),
            ("TOOLQ_ALLOW_INSECURE_REDIS", "true"),
        ];
        assert!(load(dir.path(), &allowed).is_ok());
        let tls = [
            ("TOOLQ_PROFILE", "production"),
            ("TOOLQ_REDIS_URL", "rediss://w:s3cret@redis.internal:6380"),
        ];
        assert!(load(dir.path(), &tls).is_ok());
        let local = [
            ("TOOLQ_PROFILE", "production"),
            ("TOOLQ_REDIS_URL", "redis://w:s3cret@127.0.0.1:6379"),
        ];
        assert!(load(dir.path(), &local).is_ok());
    }

    #[test]
    fn production_counts_a_password_from_a_file_too() {
        let dir = files("redis_url = \"redis://worker@redis.internal:6379\"\n", "");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let vars = [
            ("TOOLQ_PROFILE", "production"),
            ("TOOLQ_REDIS_PASSWORD_FILE", pw.to_str().unwrap()),
        ];
        let e = load(dir.path(), &vars).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Refused {
                    key: "redis_url",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = files("", "");
        let url = dir.path().join("url");
        let pw = dir.path().join("pw");
        let key = dir.path().join("key");
        std::fs::write(&url, "redis://worker@redis:6379/2\n").unwrap();
        std::fs::write(&pw, "p@ss:wd\n").unwrap();
        std::fs::write(&key, "0123456789\n").unwrap();
        let vars = [
            ("TOOLQ_REDIS_URL_FILE", url.to_str().unwrap()),
            ("TOOLQ_REDIS_PASSWORD_FILE", pw.to_str().unwrap()),
            ("OPENWEATHER_API_KEY_FILE", key.to_str().unwrap()),
        ];
        let loaded = load(dir.path(), &vars).unwrap();
        assert_eq!(
            loaded.config.redis_url,
            "redis://worker:p%40ss%3Awd@redis:6379/2"
        );
        let api_key = loaded
            .config
            .tools
            .weather
            .api_key
            .as_ref()
            .map(|k| k.expose());
        assert_eq!(api_key, Some("0123456789"), "kept a string, newline gone");
        let source = loaded.source("redis_url");
        assert!(source.contains("TOOLQ_REDIS_URL_FILE"), "{source}");
        assert!(source.contains("TOOLQ_REDIS_PASSWORD_FILE"), "{source}");
        assert!(loaded
            .source("tools.weather.api_key")
            .contains("OPENWEATHER_API_KEY_FILE"));
    }

    #[test]
    fn a_missing_secret_file_names_its_variable() {
        let dir = files("", "");
        for var in [
            "TOOLQ_REDIS_URL_FILE",
            "TOOLQ_REDIS_PASSWORD_FILE",
            "OPENWEATHER_API_KEY_FILE",
        ] {
            let e = load(dir.path(), &[(var, "/nonexistent/secret")]).unwrap_err();
            assert!(
                matches!(e, ConfigError::SecretFile { var: v, .. } if v == var),
                "{e}"
            );
            assert!(e.to_string().contains("/nonexistent/secret"), "{e}");
        }
    }

    #[test]
    fn a_password_file_with_a_password_in_the_url_is_refused() {
        let dir = files("redis_url = \"redis://:old@h:6379\"\n", "");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "new").unwrap();
        let e = load(
            dir.path(),
            &[("TOOLQ_REDIS_PASSWORD_FILE", pw.to_str().unwrap())],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("already") && !e.contains("old@"), "{e}");
    }
}
