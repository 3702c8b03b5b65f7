//! The tool catalog as producers see it: every live worker's published
//! tools merged by name, with the workers serving each. `toolq enqueue` and
//! `toolq submit` check jobs against it before anything is enqueued (when a
//! catalog exists at all: with no worker published, nothing is checked).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Producer, Result};
use crate::tools::catalog::{ToolEntry, WorkerTools};
use crate::tools::schema::ArgsSchema;

/// One tool of the catalog and the live workers that serve it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogTool {
    #[serde(flatten)]
    pub entry: ToolEntry,
    pub workers: Vec<String>,
}

/// Every tool live workers serve, by name.
#[derive(Default)]
pub struct Catalog {
    tools: BTreeMap<String, CatalogTool>,
    schemas: BTreeMap<String, ArgsSchema>,
}

impl Producer {
    /// The catalog as the live workers published it.
    pub async fn catalog(&self) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for (worker, doc) in self.broker.catalog().await? {
            // A document that does not parse (another version's) is skipped.
            let Ok(doc) = serde_json::from_str::<WorkerTools>(&doc) else {
                continue;
            };
            for entry in doc.tools {
                catalog.add(&worker, entry);
            }
        }
        Ok(catalog)
    }
}

impl Catalog {
    fn add(&mut self, worker: &str, entry: ToolEntry) {
        if let Some(known) = self.tools.get_mut(&entry.name) {
            known.workers.push(worker.to_owned());
            return;
        }
        if let Ok(schema) = ArgsSchema::compile(entry.input_schema.clone()) {
            self.schemas.insert(entry.name.clone(), schema);
        }
        self.tools.insert(
            entry.name.clone(),
            CatalogTool {
                entry,
                workers: vec![worker.to_owned()],
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools, sorted by name.
    pub fn tools(&self) -> impl Iterator<Item = &CatalogTool> {
        self.tools.values()
    }

    /// Why a job for `tool` with `args` would fail at once, if it would: an
    /// unknown tool, or arguments that fail its schema (naming the path).
    pub fn check(&self, tool: &str, args: &Value) -> std::result::Result<(), String> {
        self.check_name(tool)?;
        match self.schemas.get(tool) {
            Some(schema) => schema
                .check(args)
                .map_err(|e| format!("tool `{tool}`: {e}")),
            None => Ok(()),
        }
    }
}

impl Catalog {
    /// Why a job for `tool` would fail at once for its name alone: a
    /// follow-up's args are only known when its parent settles.
    pub fn check_name(&self, tool: &str) -> std::result::Result<(), String> {
        if self.tools.contains_key(tool) {
            return Ok(());
        }
        let names: Vec<&str> = self.tools.keys().map(String::as_str).collect();
        Err(format!(
            "no live worker serves tool `{tool}` (the catalog lists: {})",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_names_and_schemas_and_merges_workers() {
        let mut c = Catalog::default();
        let entry = |name: &str| ToolEntry {
            name: name.into(),
            description: String::new(),
            input_schema: json!({"type": "object", "properties": {"ms": {"type": "integer"}}, "required": ["ms"]}),
            source: "builtin".into(),
            schema_hash: "h".into(),
        };
        c.add("w1", entry("sleep"));
        c.add("w2", entry("sleep"));
        assert_eq!(c.tools().next().unwrap().workers, ["w1", "w2"]);
        assert!(c.check("sleep", &json!({"ms": 5})).is_ok());
        let e = c.check("sleep", &json!({"ms": "5"})).unwrap_err();
        assert!(e.contains("at /ms"), "{e}");
        let e = c.check("slep", &json!({})).unwrap_err();
        assert!(e.contains("`slep`") && e.contains("sleep"), "{e}");
    }
}
