//! What a worker publishes about each tool it serves: the catalog entry
//! producers check jobs against and the gateway will serve.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Registry;

/// One tool as the catalog lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolEntry {
    pub name: String,
    pub description: String,
    /// JSON Schema of the job's `args`.
    pub input_schema: Value,
    /// `builtin`, `rust`, `mcp` or `http`.
    pub source: String,
    /// SHA-256 (hex) of the schema's canonical text: workers that serve the
    /// same tool with different schemas show it.
    pub schema_hash: String,
}

/// A worker's catalog document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerTools {
    pub worker: String,
    pub tools: Vec<ToolEntry>,
}

/// The entries of every tool in `registry`, sorted by name.
pub fn entries(registry: &Registry) -> Vec<ToolEntry> {
    registry
        .names()
        .into_iter()
        .filter_map(|name| registry.get(name))
        .map(|tool| {
            let input_schema = tool.input_schema();
            // serde_json's maps are sorted, so the text is canonical.
            let schema_hash = Sha256::digest(input_schema.to_string().as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            ToolEntry {
                name: tool.name().to_owned(),
                description: tool.description(),
                input_schema,
                source: tool.source().to_owned(),
                schema_hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_publish_their_schemas_and_a_stable_hash() {
        let list = entries(&Registry::with_builtins());
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["calculator", "clock", "echo", "fail", "sleep"]);
        let sleep = list.iter().find(|e| e.name == "sleep").unwrap();
        assert_eq!(sleep.source, "builtin");
        assert_eq!(sleep.input_schema["required"], serde_json::json!(["ms"]));
        assert_eq!(sleep.schema_hash.len(), 64);
        assert_eq!(entries(&Registry::with_builtins()), list, "deterministic");
        // Every published schema compiles.
        for e in &list {
            crate::tools::schema::ArgsSchema::compile(e.input_schema.clone()).unwrap();
        }
    }
}
