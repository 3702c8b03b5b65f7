//! The tool set a worker starts with: the built-ins, plus tools that need
//! configuration (weather) when they have it; the settings the worker
//! applies around any tool (`[tools.<name>]`); and the test fixtures
//! (`crash`, `count`) when built with the `test-tools` feature (the test
//! suite only) and `TOOLQ_ENABLE_TEST_TOOLS=1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::http::{HttpTool, HttpToolConfig, HttpToolError};
use super::rate::RateLimit;
#[cfg(feature = "test-tools")]
use super::testing;
use super::weather::{self, WeatherConfig, WeatherTool};
use super::Registry;

/// `[tools]` in the configuration: `[tools.weather]` has its own keys; any
/// other `[tools.<name>]` (a built-in or a tool an embedding program
/// registers) takes the generic [`ToolSettings`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ToolsConfig {
    pub weather: WeatherConfig,
    /// `[tools.http.<name>]`: HTTP endpoints as tools.
    pub http: BTreeMap<String, HttpToolConfig>,
    #[serde(flatten)]
    pub other: BTreeMap<String, ToolSettings>,
}

/// What the worker does around calls of one tool, whatever the tool is.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    /// Calls allowed across every worker sharing the Redis, e.g. `"60/min"`.
    pub rate_limit: Option<RateLimit>,
}

impl ToolsConfig {
    /// The configured limit for `tool`, if any.
    pub fn rate_limit(&self, tool: &str) -> Option<RateLimit> {
        if tool == weather::NAME {
            return self.weather.rate_limit;
        }
        self.other.get(tool).and_then(|s| s.rate_limit)
    }

    /// Sets (or with `None` clears) `tool`'s limit, for programs that build
    /// their configuration in code.
    pub fn set_rate_limit(&mut self, tool: &str, limit: Option<RateLimit>) -> &mut Self {
        if tool == weather::NAME {
            self.weather.rate_limit = limit;
        } else {
            self.other.entry(tool.to_owned()).or_default().rate_limit = limit;
        }
        self
    }
}

/// A tool that cannot be set up from its configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetupError {
    #[error("tools.weather: {0}")]
    Weather(#[from] weather::ConfigError),
    #[error(transparent)]
    Http(#[from] HttpToolError),
}

/// The registry for `config`, and the tools left out for want of
/// configuration with the message their jobs fail with.
pub fn configured_registry(
    config: &ToolsConfig,
) -> Result<(Registry, Vec<(String, String)>), SetupError> {
    let mut registry = Registry::with_builtins();
    for (name, c) in &config.http {
        registry.register(HttpTool::new(name, c)?);
    }
    let mut unconfigured = Vec::new();
    match WeatherTool::from_config(config.weather.clone())? {
        Some(tool) => {
            registry.register(tool);
        }
        None => unconfigured.push((weather::NAME.to_owned(), weather::NOT_CONFIGURED.to_owned())),
    }
    #[cfg(feature = "test-tools")]
    if testing::enabled() {
        testing::register(&mut registry);
    }
    Ok((registry, unconfigured))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn any_tool_can_have_a_rate_limit() {
        let cfg: ToolsConfig = serde_json::from_str(
            r#"{"weather": {"rate_limit": "60/min"}, "calculator": {"rate_limit": "5/s"}}"#,
        )
        .unwrap();
        assert_eq!(
            cfg.rate_limit("weather"),
            Some(RateLimit::new(60, Duration::from_secs(60)))
        );
        assert_eq!(
            cfg.rate_limit("calculator"),
            Some(RateLimit::new(5, Duration::from_secs(1)))
        );
        assert_eq!(cfg.rate_limit("echo"), None);
        let mut cfg = ToolsConfig::default();
        cfg.set_rate_limit("mine", "2/h".parse().ok());
        assert_eq!(cfg.rate_limit("mine").map(|l| l.max), Some(2));
    }

    #[test]
    fn reads_sections_through_figment() {
        use figment::providers::{Format, Toml};
        let toml = r#"
            [tools.weather]
            timeout_ms = 2500
            cache_ttl_s = 60
            rate_limit = "60/min"
            [tools.echo]
            rate_limit = "5/s"
        "#;
        #[derive(Deserialize)]
        struct Outer {
            tools: ToolsConfig,
        }
        let outer: Outer = figment::Figment::new()
            .merge(Toml::string(toml))
            .extract()
            .unwrap();
        let tools = outer.tools;
        assert_eq!(tools.weather.timeout, Duration::from_millis(2500));
        assert_eq!(tools.weather.cache_ttl, Duration::from_secs(60));
        assert_eq!(tools.rate_limit("weather").map(|l| l.max), Some(60));
        assert_eq!(tools.rate_limit("echo").map(|l| l.max), Some(5));
    }

    #[test]
    fn rejects_bad_sections() {
        let err =
            serde_json::from_str::<ToolsConfig>(r#"{"echo": {"rate_limt": "5/s"}}"#).unwrap_err();
        assert!(err.to_string().contains("rate_limt"), "{err}");
        assert!(serde_json::from_str::<ToolsConfig>(r#"{"echo": {"rate_limit": "5"}}"#).is_err());
    }
}
