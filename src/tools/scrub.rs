//! Every configured secret taken out of what a tool returns, before the
//! worker stores it anywhere (result, dead entry, cache entry, log line).
//!
//! A tool masks its own secret where it can (the weather tool its key, an
//! HTTP tool its header values), but an API may echo a key in a success body,
//! a tool may cut a message through a secret, and a tool registered from
//! Rust or served by an MCP server knows nothing of the Redis password. So
//! the worker passes every output and error through one [`Scrubber`] built
//! from all the secrets it was configured with.

use serde_json::Value;

use super::secret::{Secret, REDACTED};
use super::ToolError;
use crate::spec::percent_encode;

/// Shorter values are not scrubbed: they would match ordinary words and
/// turn outputs to stars, and a value that short guards nothing anyway.
pub const MIN_SECRET_CHARS: usize = 6;

/// The secrets to take out, in the forms they may appear in.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret containing another is masked whole.
    forms: Vec<String>,
    /// The secrets as configured, for a message cut through one.
    whole: Vec<String>,
}

impl Scrubber {
    /// A scrubber for `secrets`; blank and too-short values are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut whole: Vec<String> = secrets
            .into_iter()
            .map(|s| s.expose().trim().to_owned())
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        whole.sort_unstable();
        whole.dedup();
        let mut forms = Vec::new();
        for s in &whole {
            // As sent in a URL query (the weather key) and as it sits in a
            // JSON body quoted into an error message.
            forms.push(s.clone());
            forms.push(percent_encode(s));
            let json = Value::String(s.clone()).to_string();
            forms.push(json[1..json.len() - 1].to_owned());
        }
        forms.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        forms.dedup();
        Scrubber { forms, whole }
    }

    pub fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// `text` with every secret masked, and a tail that is the start of a
    /// secret (a message cut through one, maybe followed by `…`) masked too.
    pub fn text(&self, text: String) -> String {
        if self.is_empty() {
            return text;
        }
        let mut text = text;
        for form in &self.forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), REDACTED);
            }
        }
        self.mask_cut_tail(text)
    }

    /// `value` with every string (and object key) scrubbed.
    pub fn value(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(k), self.value(v)))
                    .collect(),
            ),
            scalar => scalar,
        }
    }

    /// The error with its message scrubbed.
    pub fn error(&self, err: ToolError) -> ToolError {
        if self.is_empty() {
            return err;
        }
        err.map_message(|m| self.text(m))
    }

    fn mask_cut_tail(&self, mut text: String) -> String {
        let body_len = text.strip_suffix('…').map_or(text.len(), str::len);
        for secret in &self.whole {
            let body = &text[..body_len];
            // Longest start of the secret the text ends with, of at least
            // MIN_SECRET_CHARS characters (the whole secret is gone already).
            let cut = secret
                .char_indices()
                .map(|(i, _)| i)
                .skip(MIN_SECRET_CHARS)
                .filter(|&i| body.ends_with(&secret[..i]))
                .last();
            if let Some(len) = cut {
                text.replace_range(body_len - len..body_len, REDACTED);
                return text;
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Scrubber::new(&secrets)
    }

    #[test]
    fn masks_every_form_of_every_secret() {
        let s = scrubber(&["k3y-0a1b2c", "p@ss word\"x"]);
        assert_eq!(s.text("bad appid=k3y-0a1b2c!".into()), "bad appid=***!");
        assert_eq!(s.text("q=p%40ss%20word%22x&".into()), "q=***&");
        assert_eq!(s.text(r#"{"pw":"p@ss word\"x"}"#.into()), r#"{"pw":"***"}"#);
        assert_eq!(s.text("nothing here".into()), "nothing here");
    }

    #[test]
    fn masks_a_secret_cut_at_the_end() {
        let s = scrubber(&["TESTKEY-0a1b2c3d4e5f"]);
        assert_eq!(s.text("x appid=TESTKEY-0a".into()), "x appid=***");
        assert_eq!(s.text("x appid=TESTKEY-0a…".into()), "x appid=***…");
        // Fewer characters than a secret's minimum are left alone.
        assert_eq!(s.text("x TESTK".into()), "x TESTK");
    }

    #[test]
    fn scrubs_outputs_deeply_and_skips_short_values() {
        let s = scrubber(&["hunter2-long", "pw", "   "]);
        let out = s.value(json!({"a": ["hunter2-long"], "hunter2-long": {"b": "pw 1"}, "n": 1}));
        assert_eq!(out, json!({"a": ["***"], "***": {"b": "pw 1"}, "n": 1}));
        assert!(scrubber(&["pw"]).is_empty());
        let e = s.error(ToolError::retryable("echo hunter2-long"));
        assert_eq!(e.to_string(), "echo ***");
        assert!(e.is_retryable());
    }
}
