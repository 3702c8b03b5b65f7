//! `toolq tools [--json]`: the tool catalog, as the live workers published
//! it: each tool's name, source, description and the workers serving it.

use serde_json::json;

use crate::config::Config;
use crate::producer::Producer;

use super::{CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  toolq tools\n  toolq tools --json | jq '.tools[].name'")]
pub struct ToolsArgs {
    /// Print JSON: {"tools": [{name, description, input_schema, source, schema_hash, workers}]}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, a: ToolsArgs) -> Result<Exit, CliError> {
    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    let catalog = producer.catalog().await?;
    if a.json {
        let tools: Vec<_> = catalog.tools().collect();
        println!("{}", json!({ "tools": tools }));
        return Ok(Exit::Success);
    }
    if catalog.is_empty() {
        println!("no live worker has published its tools");
        return Ok(Exit::Success);
    }
    let width = catalog
        .tools()
        .map(|t| t.entry.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<8} {:>7}  DESCRIPTION",
        "TOOL", "SOURCE", "WORKERS"
    );
    for t in catalog.tools() {
        let mut description: String = t.entry.description.chars().take(80).collect();
        if description.chars().count() < t.entry.description.chars().count() {
            description.push('…');
        }
        println!(
            "{:<width$}  {:<8} {:>7}  {}",
            super::safe(&t.entry.name),
            super::safe(&t.entry.source),
            t.workers.len(),
            description.replace(|c: char| c.is_control(), " ")
        );
    }
    Ok(Exit::Success)
}
