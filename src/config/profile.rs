//! Profiles: `TOOLQ_PROFILE=development|testing|production` adds
//! `<profile>.toml`, next to the main configuration file, as a layer above
//! it (read when present). Production also refuses settings that would be
//! unsafe on a network: a gateway without authentication, and a Redis
//! password sent in clear text to another host (unless
//! `allow_insecure_redis` says the network is trusted).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Config, ConfigError};
use crate::spec::{is_loopback_host, SentinelUrl, UrlParts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Development,
    Testing,
    Production,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Development, Profile::Testing, Profile::Production];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Testing => "testing",
            Profile::Production => "production",
        }
    }

    /// A `TOOLQ_PROFILE` value; anything but the three names is an error,
    /// since a misspelt `production` must not run without its checks.
    pub fn parse(name: &str) -> Result<Profile, ConfigError> {
        let name = name.trim();
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ConfigError::UnknownProfile(name.to_owned()))
    }

    /// The profile's file: `<name>.toml` in the main file's directory.
    pub fn file_next_to(self, main: &Path) -> PathBuf {
        let dir = main.parent().unwrap_or(Path::new(""));
        dir.join(format!("{}.toml", self.name()))
    }

    /// The refusals of production; other profiles refuse nothing more.
    pub(super) fn refuse_insecure(
        self,
        config: &Config,
        source: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        if self != Profile::Production {
            return Ok(());
        }
        let refuse = |key: &'static str, message: String| ConfigError::Refused {
            profile: self,
            key,
            origin: source(key),
            message,
        };
        if config.serve.no_auth {
            return Err(refuse(
                "serve.no_auth",
                "the gateway must authenticate its callers: set serve.jwt_secret_file, \
                 serve.jwt_public_key_file or serve.jwks_file instead"
                    .into(),
            ));
        }
        if let Some(host) = clear_text_password_host(&config.redis_url) {
            if !config.allow_insecure_redis {
                return Err(refuse(
                    "redis_url",
                    format!(
                        "the Redis password would travel in clear text to {host}: use \
                         rediss:// (TLS), or set allow_insecure_redis = true if that \
                         network is trusted"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The host a plain `redis://` URL would send its password to, when that
/// host is not this machine.
fn clear_text_password_host(url: &str) -> Option<&str> {
    if SentinelUrl::is_sentinel(url) {
        // The sentinels' addresses stand where one host would: any of them
        // off this machine sees the passwords (the master's address comes
        // from them, so it is judged by them too).
        let parsed = SentinelUrl::parse(url).ok()?;
        let secret = parsed.password.is_some() || parsed.sentinel_password.is_some();
        let remote = parsed.sentinels.iter().any(|(h, _)| !is_loopback_host(h));
        let hosts = url.split_once("://")?.1.rsplit('@').next()?;
        let hosts = hosts.split(['/', '?']).next()?;
        return (!parsed.tls && secret && remote).then_some(hosts);
    }
    let parts = UrlParts::parse(url)?;
    let plain = parts.scheme.eq_ignore_ascii_case("redis");
    (plain && parts.has_password() && !is_loopback_host(parts.host())).then(|| parts.host())
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_names_are_profiles() {
        assert_eq!(Profile::parse("production").unwrap(), Profile::Production);
        assert_eq!(Profile::parse(" testing ").unwrap(), Profile::Testing);
        let e = Profile::parse("prod").unwrap_err().to_string();
        assert!(e.contains("\"prod\"") && e.contains("production"), "{e}");
        assert_eq!(
            Profile::Production.file_next_to(Path::new("/etc/toolq/toolq.toml")),
            Path::new("/etc/toolq/production.toml")
        );
        assert_eq!(
            Profile::Development.file_next_to(Path::new("toolq.toml")),
            Path::new("development.toml")
        );
    }

    #[test]
    fn only_a_plain_password_to_another_host_counts_as_clear_text() {
        assert_eq!(
            clear_text_password_host("redis://w:pw@redis:6379"),
            Some("redis")
        );
        assert_eq!(
            clear_text_password_host("redis://:pw@10.1.2.3"),
            Some("10.1.2.3")
        );
        assert_eq!(clear_text_password_host("rediss://w:pw@redis:6379"), None);
        assert_eq!(
            clear_text_password_host("redis://w:pw@127.0.0.1:6379"),
            None
        );
        assert_eq!(clear_text_password_host("redis://w:pw@localhost"), None);
        assert_eq!(clear_text_password_host("redis://redis:6379"), None);
        assert_eq!(clear_text_password_host("unix:///run/r.sock?pass=pw"), None);
    }
}
