//! `toolq config [--json]`: the effective configuration, each value with
//! where it came from (default, a file, an environment variable, a flag),
//! secrets masked. Needs no Redis.

use std::io::{ErrorKind, Write};
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{Config, Entry, Overrides};

use super::{CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq config\n  \
    TOOLQ_PROFILE=production toolq --config /etc/toolq/toolq.toml config\n  \
    toolq config --json | jq '.concurrency'   # {\"value\": 10, \"source\": \"default\"}")]
pub struct ConfigArgs {
    /// Print JSON: {"<key>": {"value": ..., "source": "..."}}
    #[arg(long)]
    pub json: bool,
}

pub fn run(file: Option<&Path>, overrides: &Overrides, a: ConfigArgs) -> Result<Exit, CliError> {
    let entries = Config::explain(file, overrides)?.entries();
    let text = if a.json {
        let object: Map<String, Value> = entries
            .into_iter()
            .map(|e| {
                let row = serde_json::json!({ "value": e.value, "source": e.source });
                (e.key, row)
            })
            .collect();
        format!("{}\n", Value::Object(object))
    } else {
        table(&entries)
    };
    // A reader that stops early (`| head`) is no error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(CliError::Failed(format!("toolq config: {e}")))
        }
        _ => Ok(Exit::Success),
    }
}

/// `key = value   # source`, aligned; unset values read `(unset)`.
fn table(entries: &[Entry]) -> String {
    let lines: Vec<(String, &str)> = entries
        .iter()
        .map(|e| {
            let value = match &e.value {
                Value::Null => "(unset)".to_owned(),
                v => v.to_string(),
            };
            (format!("{} = {value}", e.key), e.source.as_str())
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(line, source)| format!("{line:<width$}  # {source}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_line_per_key_with_its_source() {
        let entries = [
            Entry {
                key: "concurrency".into(),
                value: Value::from(10),
                source: "default".into(),
            },
            Entry {
                key: "serve.jwks_file".into(),
                value: Value::Null,
                source: "default".into(),
            },
        ];
        assert_eq!(
            table(&entries),
            "concurrency = 10           # default\nserve.jwks_file = (unset)  # default\n"
        );
    }
}
