//! A tool's arguments checked against its JSON Schema (MCP's `inputSchema`,
//! an HTTP tool's `input_schema`, a built-in's declared schema) with the
//! `jsonschema` crate, before anything is sent: arguments that fail are a
//! permanent `invalid_args` error naming the failing path, and the tool is
//! never called.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ToolError;

/// Most failures named in one error message.
const SHOWN_ERRORS: usize = 3;

/// A compiled schema with its digest (the catalog's `schema_hash`).
pub struct ArgsSchema {
    schema: Value,
    validator: jsonschema::Validator,
    hash: String,
}

impl std::fmt::Debug for ArgsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgsSchema")
            .field("hash", &self.hash)
            .finish()
    }
}

impl ArgsSchema {
    /// Compiles `schema`; an unusable schema is an error naming why.
    pub fn compile(schema: Value) -> Result<Self, String> {
        let validator =
            jsonschema::validator_for(&schema).map_err(|e| format!("invalid JSON Schema: {e}"))?;
        // serde_json's maps are sorted, so the text is canonical.
        let hash = Sha256::digest(schema.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(ArgsSchema {
            schema,
            validator,
            hash,
        })
    }

    /// The schema that accepts any object (tools that declare none).
    pub fn any_object() -> Self {
        Self::compile(serde_json::json!({"type": "object"}))
            .unwrap_or_else(|_| unreachable!("a constant, valid schema"))
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// SHA-256 (hex) of the schema's canonical text.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `Ok` when `args` conform; otherwise `InvalidArgs` naming each failing
    /// path (`/city`, or `/` for the object itself) and why.
    pub fn check(&self, args: &Value) -> Result<(), ToolError> {
        let mut errors = self.validator.iter_errors(args);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let mut shown = vec![describe(&first)];
        let mut more = 0;
        for e in errors {
            if shown.len() < SHOWN_ERRORS {
                shown.push(describe(&e));
            } else {
                more += 1;
            }
        }
        let mut message = shown.join("; ");
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        Err(ToolError::InvalidArgs(message))
    }
}

fn describe(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    format!("at {path}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> ArgsSchema {
        ArgsSchema::compile(json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn conforming_args_pass_and_failures_name_their_path() {
        let s = weather();
        assert!(s.check(&json!({"city": "Oslo", "days": 2})).is_ok());
        let err = s.check(&json!({"city": 5})).unwrap_err();
        assert_eq!(err.kind(), "invalid_args");
        assert!(err.to_string().contains("at /city"), "{err}");
        let err = s
            .check(&json!({"days": 0, "x": 1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("city"), "{err}");
        assert!(err.contains("at /days"), "{err}");
    }

    #[test]
    fn a_broken_schema_is_refused_and_equal_schemas_hash_alike() {
        assert!(ArgsSchema::compile(json!({"type": 5})).is_err());
        let a = ArgsSchema::compile(json!({"type": "object", "required": ["a"]})).unwrap();
        let b = ArgsSchema::compile(json!({"required": ["a"], "type": "object"})).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), ArgsSchema::any_object().hash());
    }
}
