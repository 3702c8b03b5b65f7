//! `toolq worker`: the configured tool set, then the worker until shutdown.

use crate::config::Config;
use crate::tools::configured_registry;
use crate::worker::{Shutdown, Worker};

use super::{CliError, Exit};

pub async fn run(config: Config, shutdown: Shutdown) -> Result<Exit, CliError> {
    let worker = build(config)?;
    worker.run(shutdown).await?;
    Ok(Exit::Success)
}

/// A worker with the built-in tools and whatever the configuration enables.
pub fn build(config: Config) -> Result<Worker, CliError> {
    let (registry, unconfigured) =
        configured_registry(&config.tools).map_err(|e| CliError::BadInput(e.to_string()))?;
    let mut worker = Worker::new(config, registry);
    for (tool, message) in &unconfigured {
        worker = worker.unconfigured_tool(tool, message);
    }
    Ok(worker)
}
