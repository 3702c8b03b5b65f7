//! The tool set a worker starts with: the built-ins, plus tools that need
//! configuration (weather) when they have it, plus the test fixtures
//! (`crash`, `count`) when `TOOLQ_ENABLE_TEST_TOOLS=1`.

use serde::Deserialize;

use super::testing;
use super::weather::{self, WeatherConfig, WeatherTool};
use super::Registry;

/// `[tools]` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ToolsConfig {
    pub weather: WeatherConfig,
}

/// The registry for `config`, and the tools left out for want of
/// configuration with the message their jobs fail with.
pub fn configured_registry(
    config: &ToolsConfig,
) -> Result<(Registry, Vec<(String, String)>), weather::ConfigError> {
    let mut registry = Registry::with_builtins();
    let mut unconfigured = Vec::new();
    match WeatherTool::from_config(config.weather.clone())? {
        Some(tool) => {
            registry.register(tool);
        }
        None => unconfigured.push((weather::NAME.to_owned(), weather::NOT_CONFIGURED.to_owned())),
    }
    if testing::enabled() {
        testing::register(&mut registry);
    }
    Ok((registry, unconfigured))
}
