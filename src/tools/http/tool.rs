//! One HTTP endpoint as a tool. `url`, `method` (default POST), `headers`
//! (a value written `env:NAME` is read from that variable, `file:PATH` from
//! that file, so secrets stay out of the configuration; they are masked in
//! every error), an optional `input_schema` (a JSON Schema file the job's
//! args are checked against before anything is sent), `timeout_ms` and
//! `description`. 2xx: the JSON body is the output. 429 and 5xx: retryable,
//! honouring `Retry-After`. Other 4xx: permanent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::exchange;
use crate::tools::schema::ArgsSchema;
use crate::tools::secret::{Secret, REDACTED};
use crate::tools::{JobContext, Tool, ToolError};

/// A response larger than this fails the attempt instead of filling Redis.
const MAX_BODY_BYTES: usize = 1 << 20;
/// What a failed response's body may add to the error message.
const MAX_DETAIL_CHARS: usize = 200;

/// `[tools.http.<name>]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpToolConfig {
    pub url: String,
    pub method: String,
    /// Header values; `env:NAME` and `file:PATH` read secrets from outside.
    pub headers: BTreeMap<String, String>,
    /// A JSON Schema file for the job's `args`.
    pub input_schema: Option<PathBuf>,
    pub timeout_ms: u64,
    pub description: String,
}

impl Default for HttpToolConfig {
    fn default() -> Self {
        HttpToolConfig {
            url: String::new(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            input_schema: None,
            timeout_ms: 30_000,
            description: String::new(),
        }
    }
}

/// Why an HTTP tool cannot be set up; start-up stops on it, naming the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("tools.http.{tool}.{key}: {message}")]
pub struct HttpToolError {
    pub tool: String,
    pub key: &'static str,
    pub message: String,
}

pub struct HttpTool {
    name: String,
    url: Url,
    method: Method,
    headers: HeaderMap,
    /// Header values read from the environment or files: masked in errors.
    secrets: Vec<String>,
    schema: Option<ArgsSchema>,
    timeout: Duration,
    description: String,
    http: reqwest::Client,
    service: String,
}

impl HttpTool {
    pub fn new(name: &str, c: &HttpToolConfig) -> Result<HttpTool, HttpToolError> {
        let fail = |key: &'static str, message: String| HttpToolError {
            tool: name.to_owned(),
            key,
            message,
        };
        let url = Url::parse(c.url.trim()).map_err(|e| fail("url", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(
                "url",
                format!("scheme must be http or https, not {}", url.scheme()),
            ));
        }
        let method = Method::from_bytes(c.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| fail("method", format!("not an HTTP method: {:?}", c.method)))?;
        if c.timeout_ms == 0 {
            return Err(fail("timeout_ms", "must be greater than zero".into()));
        }
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (key, spec) in &c.headers {
            let value = header_value(spec).map_err(|m| fail("headers", format!("{key}: {m}")))?;
            if is_secret_header(key, spec) {
                secrets.push(value.clone());
            }
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| fail("headers", format!("not a header name: {key:?}")))?;
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| fail("headers", format!("{key}: not a valid header value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let schema = match &c.input_schema {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail("input_schema", format!("{}: {e}", path.display())))?;
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| fail("input_schema", format!("{}: {e}", path.display())))?;
                Some(ArgsSchema::compile(value).map_err(|m| fail("input_schema", m))?)
            }
        };
        let timeout = Duration::from_millis(c.timeout_ms);
        let http = exchange::client(timeout).map_err(|e| fail("url", exchange::describe(&e)))?;
        Ok(HttpTool {
            name: name.to_owned(),
            service: format!("HTTP tool `{name}`"),
            url,
            method,
            headers,
            secrets,
            schema,
            timeout,
            description: c.description.clone(),
            http,
        })
    }

    async fn exchange(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        let response = self
            .http
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .headers(job_headers(cx))
            .json(args)
            .send()
            .await
            .map_err(|e| exchange::transport_error(e, &self.service, self.timeout))?;
        let status = response.status();
        let retry_after = exchange::retry_after(response.headers());
        let body = exchange::read_body(response, MAX_BODY_BYTES, &self.service, self.timeout).await;
        if !status.is_success() {
            // Masked before it is cut: a cut through a secret would leave
            // its first characters in the message.
            let detail = body.ok().map(|b| {
                self.mask_text(String::from_utf8_lossy(&b).into_owned())
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_DETAIL_CHARS)
                    .collect::<String>()
            });
            return Err(exchange::status_error(
                status,
                retry_after,
                detail.filter(|d| !d.is_empty()),
                &self.service,
            ));
        }
        let body = body?;
        serde_json::from_slice(&body).map_err(|e| {
            ToolError::Permanent(format!(
                "{} answered {status} with a body that is not JSON: {e}",
                self.service
            ))
        })
    }

    /// Every secret header value masked in `text`: whole, and each of its
    /// words (a token without its `Bearer ` scheme).
    fn mask_text(&self, mut text: String) -> String {
        for secret in &self.secrets {
            let words = secret.split_whitespace().filter(|w| w.len() >= 8);
            for s in std::iter::once(secret.as_str()).chain(words) {
                if !s.is_empty() {
                    text = text.replace(s, REDACTED);
                }
            }
        }
        text
    }

    /// Masks every secret header value, wherever a message picked it up.
    fn mask(&self, err: ToolError) -> ToolError {
        err.map_message(|m| self.mask_text(m))
    }
}

/// Whether a configured header holds a secret: read from outside (`env:`,
/// `file:`), or written literally under a name that says so
/// (`Authorization`, `Cookie`, `X-Api-Key`, `*token*`, `*secret*`…). Those
/// are masked in errors and scrubbed from outputs; an ordinary value
/// (`Content-Type: application/json`) must not be, or every output naming it
/// would turn to stars.
pub fn is_secret_header(name: &str, spec: &str) -> bool {
    if spec.starts_with("env:") || spec.starts_with("file:") {
        return true;
    }
    let name = name.to_ascii_lowercase();
    [
        "auth", "cookie", "key", "token", "secret", "password", "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A header value as configured: literal, `env:NAME` or `file:PATH`.
pub fn header_value(spec: &str) -> Result<String, String> {
    if let Some(var) = spec.strip_prefix("env:") {
        return std::env::var(var).map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|v| v.trim().to_owned())
            .map_err(|e| format!("cannot read {path}: {e}"));
    }
    Ok(spec.to_owned())
}

/// Request header carrying the job's id: the same on every attempt, so an
/// endpoint can use it as an idempotency key.
pub const JOB_ID_HEADER: &str = "x-toolq-job-id";
/// Request header carrying the attempt (0 on the first try).
pub const ATTEMPT_HEADER: &str = "x-toolq-attempt";
/// Request header carrying the job's queue.
pub const QUEUE_HEADER: &str = "x-toolq-queue";

/// The job's id, attempt and queue as request headers. An id that is not a
/// valid header value (control characters) is left out rather than failing
/// the call.
fn job_headers(cx: JobContext<'_>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    let pairs = [
        (JOB_ID_HEADER, HeaderValue::from_str(cx.id())),
        (
            ATTEMPT_HEADER,
            HeaderValue::from_str(&cx.attempt().to_string()),
        ),
        (QUEUE_HEADER, HeaderValue::from_str(cx.queue())),
    ];
    for (name, value) in pairs {
        if let Ok(value) = value {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

#[async_trait]
impl Tool for HttpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        match &self.schema {
            Some(schema) => schema.check(args),
            None => Ok(()),
        }
    }

    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        self.exchange(args, cx).await.map_err(|e| self.mask(e))
    }

    fn timeout(&self) -> Duration {
        self.timeout + Duration::from_secs(1)
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn input_schema(&self) -> Value {
        match &self.schema {
            Some(schema) => schema.schema().clone(),
            None => serde_json::json!({"type": "object"}),
        }
    }

    fn source(&self) -> &'static str {
        "http"
    }

    /// Each secret header value whole, and each long word of it (the token
    /// without its `Bearer ` scheme), as [`HttpTool::mask_text`] masks them.
    fn secrets(&self) -> Vec<Secret> {
        self.secrets
            .iter()
            .flat_map(|s| {
                std::iter::once(s.as_str()).chain(s.split_whitespace().filter(|w| w.len() >= 8))
            })
            .map(Secret::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_key() {
        let c = |url: &str, method: &str| HttpToolConfig {
            url: url.into(),
            method: method.into(),
            ..Default::default()
        };
        let e = HttpTool::new("t", &c("ftp://x", "POST")).err().unwrap();
        assert_eq!(e.key, "url");
        let e = HttpTool::new("t", &c("http://x", "NOT A METHOD"))
            .err()
            .unwrap();
        assert_eq!(e.key, "method");
        let mut bad_header = c("http://x", "GET");
        bad_header.headers.insert(
            "Authorization".into(),
            "env:TOOLQ_TEST_UNSET_VARIABLE".into(),
        );
        let e = HttpTool::new("t", &bad_header).err().unwrap();
        let mut literal = c("http://x", "GET");
        literal
            .headers
            .insert("Authorization".into(), "Bearer literal-token-1".into());
        literal
            .headers
            .insert("Content-Type".into(), "application/json".into());
        let secrets: Vec<String> = HttpTool::new("t", &literal)
            .unwrap()
            .secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        assert_eq!(secrets, ["Bearer literal-token-1", "literal-token-1"]);
        assert_eq!(e.to_string(), "tools.http.t.headers: Authorization: environment variable TOOLQ_TEST_UNSET_VARIABLE is not set");
        assert!(HttpTool::new("t", &c("https://x/api", "put")).is_ok());
    }
}
