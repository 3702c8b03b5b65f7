//! `[serve]`: the gateway's settings (`toolq serve`). Only values live here;
//! the gateway reads the key files when it starts, so a missing file is
//! reported once, at start-up, with the key that named it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Loopback by default: the gateway is exposed on purpose, behind TLS.
pub const DEFAULT_SERVE_ADDR: &str = "127.0.0.1:8080";
/// One request body (a batch included).
pub const DEFAULT_SERVE_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most jobs in one `POST /batch`.
pub const DEFAULT_SERVE_MAX_BATCH: usize = 10_000;
/// `wait_ms` when a request gives none.
pub const DEFAULT_SERVE_WAIT_MS: u64 = 10_000;
/// Longest `wait_ms` (and the longest a batch stream stays open).
pub const DEFAULT_SERVE_MAX_WAIT_MS: u64 = 60_000;
/// Clock difference tolerated on `exp` and `nbf`.
pub const DEFAULT_SERVE_JWT_LEEWAY_S: u64 = 5;
/// Connections open at once; never more than half the process's
/// file-descriptor limit. A newcomer over it closes the connection idle
/// longest.
pub const DEFAULT_SERVE_MAX_CONNECTIONS: usize = 1024;
/// From a request's first byte to the end of its header.
pub const DEFAULT_SERVE_HEADER_TIMEOUT_MS: u64 = 10_000;
/// A connection with no request in progress: longer than the 60 s for
/// which a proxy in front (ops/nginx) keeps an idle connection to reuse,
/// so the gateway never closes one that the proxy is about to send on.
pub const DEFAULT_SERVE_IDLE_TIMEOUT_MS: u64 = 75_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the HTTP API and `/mcp` listen (`toolq serve --addr`).
    pub addr: String,
    /// HS256: a file holding the shared secret.
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256 / EdDSA: a PEM file with the public key.
    pub jwt_public_key_file: Option<PathBuf>,
    /// RS256 / EdDSA: a JWKS file (keys picked by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    pub jwt_leeway_s: u64,
    /// Serve without authentication: refused unless `addr` is loopback.
    pub no_auth: bool,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub default_wait_ms: u64,
    pub max_wait_ms: u64,
    /// Requests per token (e.g. "100/s"), counted in Redis across gateways.
    pub rate_limit: Option<String>,
    /// Most connections open at once (and at most half the process's
    /// file-descriptor limit).
    pub max_connections: usize,
    /// Longest a request's header may take from its first byte.
    pub header_timeout_ms: u64,
    /// Longest a connection stays open with no request in progress.
    pub idle_timeout_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: DEFAULT_SERVE_ADDR.into(),
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            jwt_leeway_s: DEFAULT_SERVE_JWT_LEEWAY_S,
            no_auth: false,
            max_body_bytes: DEFAULT_SERVE_MAX_BODY_BYTES,
            max_batch: DEFAULT_SERVE_MAX_BATCH,
            default_wait_ms: DEFAULT_SERVE_WAIT_MS,
            max_wait_ms: DEFAULT_SERVE_MAX_WAIT_MS,
            rate_limit: None,
            max_connections: DEFAULT_SERVE_MAX_CONNECTIONS,
            header_timeout_ms: DEFAULT_SERVE_HEADER_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_SERVE_IDLE_TIMEOUT_MS,
        }
    }
}
