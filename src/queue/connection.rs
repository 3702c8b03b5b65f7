//! Connecting to Redis: the pool for ordinary calls, dedicated connections for
//! blocking waits, TLS with an optional custom CA, Sentinel (the master found
//! by name, again after each failover), Redis Cluster (see `cluster`), and
//! URLs safe to log.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::{Hook, Manager, Pool, Runtime};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};

use super::cluster::RedisConn;
use super::sentinel::{no_master, SentinelSpec};
use super::{QueueError, Result};
use crate::spec::{mask_url, SentinelUrl};

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
    pub(super) endpoint: Endpoint,
    pub(super) masked: String,
    /// Given to every connection made from this target (`CLIENT SETNAME`),
    /// so that `CLIENT LIST` shows which worker holds it: a worker none of
    /// whose named connections is left has died (see `worker::reaper`).
    client_name: Option<String>,
    /// Replicas a durable write waits for (`WAIT`), if any.
    wait: Option<WaitReplicas>,
    /// On a cluster, its seed nodes, one of which carries the wake-up
    /// subscription (a cluster broadcasts `PUBLISH` to every node).
    pub(super) wake_nodes: Arc<Vec<Client>>,
}

/// `WAIT numreplicas timeout` after each durable write (see
/// [`RedisTarget::with_wait_replicas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    pub replicas: u32,
    pub timeout: Duration,
}

#[derive(Clone)]
pub(super) enum Endpoint {
    /// One server, at a fixed address.
    Direct(Box<Client>),
    /// The master the sentinels name: asked again for each new connection,
    /// so a reconnect after a failover lands on the promoted replica.
    Sentinel(Arc<SentinelSpec>),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.masked)
    }
}

impl RedisTarget {
    /// Parses `redis://`, `rediss://` and `redis+sentinel://` URLs (see
    /// [`SentinelUrl`]); `ca_file` replaces the system roots for TLS (a
    /// private CA).
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self> {
        let masked = mask_url(url);
        let bad = |e: redis::RedisError| QueueError::Config(format!("redis url {masked}: {e}"));
        let ca = read_ca(ca_file)?;
        let endpoint = if SentinelUrl::is_sentinel(url) {
            let url = SentinelUrl::parse(url)
                .map_err(|why| QueueError::Config(format!("redis url {masked} {why}")))?;
            let spec = SentinelSpec { url, ca };
            // Built once here so a bad combination fails at start-up.
            spec.client().map_err(bad)?;
            Endpoint::Sentinel(Arc::new(spec))
        } else {
            let info = url.into_connection_info().map_err(bad)?;
            let client = match ca {
                Some(root) => {
                    let certs = redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    };
                    Client::build_with_tls(info, certs).map_err(bad)?
                }
                None => Client::open(info).map_err(bad)?,
            };
            Endpoint::Direct(Box::new(client))
        };
        Ok(RedisTarget {
            endpoint,
            masked,
            client_name: None,
            wait: None,
            wake_nodes: Arc::default(),
        })
    }

    /// The same target, making each durable write (enqueues, acks, retries,
    /// burials) wait until `replicas` replicas have it, for at most
    /// `timeout`; 0 replicas turns waiting off.
    pub fn with_wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(WaitReplicas { replicas, timeout });
        self
    }

    /// The replicas durable writes wait for, if any.
    pub fn wait_replicas(&self) -> Option<WaitReplicas> {
        self.wait
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

    /// What makes this target's connections: a pool for one server, a
    /// sentinel client for a master found through sentinels.
    pub(crate) fn connector(&self) -> Result<Connector> {
        match &self.endpoint {
            Endpoint::Direct(client) => self.pool(client).map(|pool| Connector {
                kind: ConnectorKind::Pool {
                    pool,
                    client: (**client).clone(),
                },
                client_name: self.client_name.clone(),
            }),
            Endpoint::Sentinel(spec) => {
                let client = spec
                    .client()
                    .map_err(|e| QueueError::Config(format!("redis url {}: {e}", self.masked)))?;
                Ok(Connector {
                    kind: ConnectorKind::Sentinel {
                        client: tokio::sync::Mutex::new(client),
                        service: spec.url.service.clone(),
                    },
                    client_name: self.client_name.clone(),
                })
            }
            Endpoint::Cluster(client) => Ok(Connector {
                kind: ConnectorKind::Cluster((**client).clone(), self.wake_nodes.clone()),
                client_name: self.client_name.clone(),
            }),
        }
    }

    fn pool(&self, client: &Client) -> Result<Pool> {
        let manager = Manager::new_with_config(client.get_connection_info().clone(), config(None))
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
}

pub(super) fn read_ca(ca_file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    match ca_file {
        Some(path) => Ok(Some(std::fs::read(path).map_err(|e| {
            QueueError::Config(format!("redis CA file {}: {e}", path.display()))
        })?)),
        None => Ok(None),
    }
}

/// Opens connections to a target's (current) master: one per [`Broker`],
/// on the runtime that uses them.
///
/// [`Broker`]: super::Broker
pub(crate) struct Connector {
    kind: ConnectorKind,
    client_name: Option<String>,
}

enum ConnectorKind {
    Pool {
        pool: Pool,
        /// For the dedicated connections, which stay out of the pool.
        client: Client,
    },
    Sentinel {
        /// Locked while the sentinels are asked: one lookup at a time, so a
        /// failover does not send every waiting task to the sentinels at once.
        client: tokio::sync::Mutex<SentinelClient>,
        service: String,
    },
    /// Each connection is a cluster connection of its own (connections to
    /// every master it needs), so a dedicated one never shares a node's
    /// socket with the shared one. Connections are not named: the cluster
    /// client opens node connections by itself (to a promoted replica, to a
    /// slot's new owner), and a name given once would be missing there; so
    /// the reapers do not read `CLIENT LIST` on a cluster (see
    /// `worker::reaper`).
    Cluster(ClusterClient, Arc<Vec<Client>>),
}

impl Connector {
    /// A new connection of its own. `block` is the longest blocking command
    /// it will carry, added to its reply timeout.
    pub(crate) async fn connect(&self, block: Option<Duration>) -> Result<RedisConn> {
        let mut conn = match (&self.kind, block) {
            (ConnectorKind::Pool { pool, .. }, None) => {
                let conn = pool
                    .get()
                    .await
                    .map_err(|e| QueueError::pool("connect", e))?;
                return Ok(RedisConn::Single(deadpool_redis::Connection::take(conn)));
            }
            (ConnectorKind::Cluster(client, _), _) => {
                let conn = client
                    .get_async_connection_with_config(super::cluster::config(block))
                    .await
                    .map_err(|e| QueueError::redis("connect", e))?;
                return Ok(RedisConn::Cluster(conn));
            }
            (ConnectorKind::Pool { client, .. }, Some(_)) => client
                .get_multiplexed_async_connection_with_config(&config(block))
                .await
                .map_err(|e| QueueError::redis("connect", e))?,
            (ConnectorKind::Sentinel { client, service }, _) => {
                let master = tokio::time::timeout(CONNECT_TIMEOUT, async {
                    client.lock().await.async_get_client().await
                })
                .await
                .map_err(|_| QueueError::Unavailable {
                    op: "connect",
                    message: format!(
                        "the sentinels named no master for {service:?} within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                })?
                .map_err(|e| no_master(service, e))?;
                master
                    .get_multiplexed_async_connection_with_config(&config(block))
                    .await
                    .map_err(|e| QueueError::redis("connect", e))?
            }
        };
        if let Some(name) = &self.client_name {
            set_name(&mut conn, name).await;
        }
        Ok(RedisConn::Single(conn))
    }
}

impl Connector {
    /// A subscriber connection: to the server, the current master, or the
    /// first seed node of a cluster that answers. Unnamed: the reapers
    /// judge a worker by its other connections.
    pub(crate) async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        let fail = |e| QueueError::redis("subscribe", e);
        let connect = |client: Client| async move {
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| QueueError::Unavailable {
                    op: "subscribe",
                    message: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                })?
                .map_err(fail)
        };
        match &self.kind {
            ConnectorKind::Pool { client, .. } => connect(client.clone()).await,
            ConnectorKind::Sentinel { client, service } => {
                let master = client.lock().await.async_get_client().await;
                connect(master.map_err(|e| no_master(service, e))?).await
            }
            ConnectorKind::Cluster(_, nodes) => {
                let mut last = QueueError::Config("no cluster node to subscribe on".into());
                for node in nodes.iter() {
                    match connect(node.clone()).await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}

/// Timeouts of a connection; `block` is added to the reply timeout of one
/// that carries blocking commands.
fn config(block: Option<Duration>) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(block.unwrap_or_default() + RESPONSE_TIMEOUT))
}

/// Names a fresh connection. A refusal (an ACL without `client|setname`)
/// leaves it unnamed rather than failing it: the worker still works, but to
/// other reapers it looks disconnected, so only its heartbeat (every
/// interval, inside the interval plus `disconnect_grace_ms`) keeps it from
/// being declared dead; hence the warning.
async fn set_name(conn: &mut MultiplexedConnection, name: &str) {
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

    #[test]
    fn bad_sentinel_urls_are_config_errors_without_the_password() {
        let err = RedisTarget::new("redis+sentinel://:s3cret@h1,h2", None).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("names no service"), "{text}");
    }
}
