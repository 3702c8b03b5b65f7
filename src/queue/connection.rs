//! Connecting to Redis: the pool for ordinary calls, dedicated connections for
//! blocking waits, TLS with an optional custom CA, and URLs safe to log.

use std::path::Path;
use std::time::Duration;

use deadpool_redis::{Hook, Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};

use super::{QueueError, Result};
use crate::spec::mask_url;

/// How long establishing a connection may take before it counts as an outage.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a non-blocking call may take; a stalled Redis is an outage too.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start-up check waits for Redis to answer `PING`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the pool keeps; multiplexed, so a handful serve many tasks.
pub const POOL_SIZE: usize = 16;

/// Where Redis is and how to reach it. The URL may hold a password: format it
/// with [`mask_url`] only.
#[derive(Clone)]
pub struct RedisTarget {
    client: Client,
    masked: String,
    /// Given to every connection made from this target (`CLIENT SETNAME`),
    /// so that `CLIENT LIST` shows which worker holds it: a worker none of
    /// whose named connections is left has died (see `worker::reaper`).
    client_name: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

impl RedisTarget {
    /// Parses `redis://` or `rediss://` URLs; `ca_file` replaces the system
    /// roots for TLS (a private CA).
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self> {
        let masked = mask_url(url);
        let bad = |e: redis::RedisError| QueueError::Config(format!("redis url {masked}: {e}"));
        let info = url.into_connection_info().map_err(bad)?;
        let client = match ca_file {
            Some(path) => {
                let root = std::fs::read(path).map_err(|e| {
                    QueueError::Config(format!("redis CA file {}: {e}", path.display()))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                };
                Client::build_with_tls(info, certs).map_err(bad)?
            }
            None => Client::open(info).map_err(bad)?,
        };
        Ok(RedisTarget {
            client,
            masked,
            client_name: None,
        })
    }

    /// The same target, naming each connection it makes `name` (no spaces:
    /// Redis refuses them in a name).
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// The URL with any password replaced by `***`.
    pub fn masked_url(&self) -> &str {
        &self.masked
    }

    pub(crate) fn pool(&self) -> Result<Pool> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager = Manager::new_with_config(self.client.get_connection_info().clone(), config)
            .map_err(|e| QueueError::Config(format!("redis url {}: {e}", self.masked)))?;
        let mut builder = Pool::builder(manager);
        if let Some(name) = self.client_name.clone() {
            builder = builder.post_create(Hook::async_fn(move |conn, _| {
                let name = name.clone();
                Box::pin(async move {
                    set_name(conn, &name).await;
                    Ok(())
                })
            }));
        }
        builder
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| QueueError::Config(format!("redis client: {e}")))
    }

    /// A connection of its own for blocking commands, so a `BLMOVE` never
    /// holds up the calls multiplexed on the pool's connections.
    pub(crate) async fn dedicated(
        &self,
        block: Duration,
    ) -> Result<redis::aio::MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(block + RESPONSE_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| QueueError::redis("connect", e))?;
        if let Some(name) = &self.client_name {
            set_name(&mut conn, name).await;
        }
        Ok(conn)
    }
}

/// Names a fresh connection. A refusal (an ACL without `client|setname`)
/// leaves it unnamed rather than failing it: the worker still works, but to
/// other reapers it looks disconnected, so only its heartbeat (every
/// interval, inside the interval plus `disconnect_grace_ms`) keeps it from
/// being declared dead; hence the warning.
async fn set_name(conn: &mut redis::aio::MultiplexedConnection, name: &str) {
    let named: redis::RedisResult<()> = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(name)
        .query_async(conn)
        .await;
    if let Err(e) = named {
        tracing::warn!(error = %e, name, "could not name a redis connection (CLIENT SETNAME); other workers may take this one for dead if a heartbeat is late");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        let err = RedisTarget::new("http://u:s3cret@host", None).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("u:***@host"), "{text}");
    }
}
