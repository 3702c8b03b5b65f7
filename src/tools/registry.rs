//! Tools by name. The worker looks every job's `tool` up here; a Rust program
//! embedding toolq registers its own tools next to the built-in ones.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Calculator, Clock, Echo, Fail, Secret, Sleep, Tool};

/// A shared, read-mostly map from tool name to implementation.
#[derive(Clone, Default)]
pub struct Registry {
    tools: HashMap<String, Arc<dyn Tool>>,
    /// Name prefixes that belong to a tool source (an MCP server) whose
    /// tools may not be listed yet: such a job waits for its source.
    namespaces: Vec<(String, String)>,
}

impl Registry {
    /// An empty registry; see [`Registry::with_builtins`] for the usual start.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in tools: `calculator`, `echo`, `sleep`, `fail` and `clock`.
    pub fn with_builtins() -> Self {
        let mut registry = Self::new();
        registry
            .register(Calculator)
            .register(Echo)
            .register(Sleep)
            .register(Fail)
            .register(Clock);
        registry
    }

    /// Adds or replaces a tool under its own name.
    pub fn register(&mut self, tool: impl Tool) -> &mut Self {
        self.register_arc(Arc::new(tool))
    }

    pub fn register_arc(&mut self, tool: Arc<dyn Tool>) -> &mut Self {
        self.tools.insert(tool.name().to_owned(), tool);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// Declares that tool names starting with `prefix` come from `source`.
    pub fn add_namespace(&mut self, prefix: &str, source: &str) -> &mut Self {
        self.namespaces.push((prefix.to_owned(), source.to_owned()));
        self
    }

    /// The source whose namespace `name` falls in, if any.
    pub fn namespace_of(&self, name: &str) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, source)| source.as_str())
    }

    /// Every registered tool's secrets, for the worker's [`super::Scrubber`].
    pub fn secrets(&self) -> Vec<Secret> {
        self.tools.values().flat_map(|t| t.secrets()).collect()
    }

    /// Registered names, sorted, for error messages and `--help`.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tools.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_registered_by_name() {
        let registry = Registry::with_builtins();
        assert_eq!(
            registry.names(),
            ["calculator", "clock", "echo", "fail", "sleep"]
        );
        for name in registry.names() {
            assert_eq!(registry.get(name).map(|tool| tool.name()), Some(name));
        }
        assert!(registry.get("weather").is_none());
    }
}
