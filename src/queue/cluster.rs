//! Redis Cluster: the connection every queue call goes through, whichever
//! kind of Redis is behind it, and the few calls that must name the nodes
//! themselves (a `SCAN` of the keyspace, `INFO` of each master).
//!
//! The cluster client routes each command by its first key's slot and
//! follows `MOVED` and `ASK` redirections and topology changes by itself. A
//! script runs on the master of its first key's slot: every script's keys
//! share one hash tag (see each script's header). A pipeline of one slot
//! goes whole to that slot's master, so `WAIT` after a write reaches the
//! master that took the write (see `durable`); one over several slots goes
//! in runs of one slot each (see `slots`).
//!
//! Credentials, TLS and the CA come from `redis_url` (its host and port are
//! not used), the nodes from `redis_cluster_nodes`: the client learns the
//! rest of the cluster from any of them.

use std::path::Path;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, RedisFuture, Value};

use super::connection::{read_ca, Endpoint, RedisTarget};
use super::{QueueError, Result};

impl RedisTarget {
    /// The target a configuration names: `url` and its CA, or, when
    /// `cluster_nodes` are given, the cluster they seed (see
    /// [`Self::with_cluster_nodes`]).
    pub fn open(url: &str, ca_file: Option<&Path>, cluster_nodes: &[String]) -> Result<Self> {
        Self::new(url, ca_file)?.with_cluster_nodes(cluster_nodes, ca_file)
    }

    /// The same target on a Redis Cluster whose seed nodes are `nodes`
    /// (`host:port`), reached with the credentials, TLS and CA of this
    /// target's URL; no nodes leaves the target as it is. A Sentinel URL
    /// cannot be combined with nodes.
    pub fn with_cluster_nodes(mut self, nodes: &[String], ca_file: Option<&Path>) -> Result<Self> {
        if nodes.is_empty() {
            return Ok(self);
        }
        let info = match &self.endpoint {
            Endpoint::Direct(client) => client.get_connection_info().clone(),
            _ => {
                return Err(QueueError::Config(format!(
                    "redis_cluster_nodes: redis url {} is a Sentinel URL; a cluster takes only \
                     credentials and TLS from redis_url (redis:// or rediss://)",
                    self.masked
                )))
            }
        };
        let ca = read_ca(ca_file)?;
        let client = client(&info, nodes, ca.clone(), &self.masked)?;
        self.wake_nodes = std::sync::Arc::new(node_clients(&info, nodes, ca)?);
        self.endpoint = Endpoint::Cluster(Box::new(client));
        self.masked = format!("redis cluster {}", nodes.join(","));
        Ok(self)
    }

    /// Whether the target is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.endpoint, Endpoint::Cluster(_))
    }
}

/// Where a command that names no key of its own goes on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Wherever the client routes it.
    Any,
    /// The node at this host and port.
    Addr(String, u16),
    /// The master of this key's slot.
    MasterOf(String),
}

/// A connection to a single server or to a whole cluster; both multiplex
/// many tasks' calls and are cheap to clone.
#[derive(Clone)]
pub enum RedisConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => {
                let whole = offset == 0 && count == pipeline.len();
                match super::slots::runs(pipeline).filter(|_| whole) {
                    Some(runs) => Box::pin(super::slots::send_runs(c, runs)),
                    None => c.req_packed_commands(pipeline, offset, count),
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// The masters' addresses (`host:port`), as the client sees the
    /// topology now; `None` on a single server.
    pub async fn masters(&mut self) -> redis::RedisResult<Option<Vec<Node>>> {
        let RedisConn::Cluster(c) = self else {
            return Ok(None);
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let replies = c.route_command(redis::cmd("PING"), routing).await?;
        let Value::Map(pairs) = replies else {
            return Ok(Some(Vec::new()));
        };
        let mut out = Vec::with_capacity(pairs.len());
        for (addr, _) in pairs {
            let addr: String = redis::from_redis_value(addr)?;
            if let Some((host, port)) = addr.rsplit_once(':') {
                if let Ok(port) = port.parse() {
                    out.push(Node::Addr(host.to_owned(), port));
                }
            }
        }
        Ok(Some(out))
    }

    /// Runs `cmd` on `node` of a cluster, or on the one server.
    pub async fn on_node<T: redis::FromRedisValue>(
        &mut self,
        node: &Node,
        cmd: Cmd,
    ) -> redis::RedisResult<T> {
        let RedisConn::Cluster(c) = self else {
            return cmd.query_async(self).await;
        };
        let routing = match node {
            Node::Any => return cmd.query_async(c).await,
            Node::Addr(host, port) => SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            },
            Node::MasterOf(key) => {
                SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master))
            }
        };
        Ok(redis::from_redis_value(
            c.route_command(cmd, RoutingInfo::SingleNode(routing))
                .await?,
        )?)
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

/// The cluster client for `nodes` (`host:port`), with the credentials, TLS
/// and database of `url`. A database other than 0 is refused: a cluster
/// has only one.
pub(super) fn client(
    url: &ConnectionInfo,
    nodes: &[String],
    ca: Option<Vec<u8>>,
    masked: &str,
) -> Result<ClusterClient, QueueError> {
    let bad = |why: String| QueueError::Config(format!("redis_cluster_nodes: {why}"));
    if url.redis_settings().db() != 0 {
        return Err(bad(format!(
            "redis url {masked} names database {}, but a cluster has only database 0",
            url.redis_settings().db()
        )));
    }
    let mut infos = Vec::with_capacity(nodes.len());
    for node in nodes {
        infos.push(node_info(url, node).map_err(bad)?);
    }
    if infos.is_empty() {
        return Err(bad("no node given".into()));
    }
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(super::connection::CONNECT_TIMEOUT)
        .response_timeout(super::connection::RESPONSE_TIMEOUT);
    if let Some(root) = ca {
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        });
    }
    builder.build().map_err(|e| bad(e.to_string()))
}

/// `url` (user, password, TLS) pointed at the seed node `node` (host:port).
fn node_info(url: &ConnectionInfo, node: &str) -> Result<ConnectionInfo, String> {
    let (host, port) = parse_node(node)?;
    let addr = match url.addr() {
        ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    Ok(url.clone().set_addr(addr))
}

/// A plain client per seed node, for the wake-up subscription (pub/sub is
/// not routed by slot: any node hears every `PUBLISH`).
fn node_clients(
    url: &ConnectionInfo,
    nodes: &[String],
    ca: Option<Vec<u8>>,
) -> Result<Vec<redis::Client>, QueueError> {
    let bad = |why: String| QueueError::Config(format!("redis_cluster_nodes: {why}"));
    let mut clients = Vec::with_capacity(nodes.len());
    for node in nodes {
        let info = node_info(url, node).map_err(bad)?;
        let client = match &ca {
            Some(root) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        clients.push(client.map_err(|e| bad(e.to_string()))?);
    }
    Ok(clients)
}

/// Connection settings for a cluster connection that carries blocking
/// commands for up to `block`.
pub(super) fn config(block: Option<std::time::Duration>) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(super::connection::CONNECT_TIMEOUT)
        .set_response_timeout(block.unwrap_or_default() + super::connection::RESPONSE_TIMEOUT)
}

/// `host:port`, the port required (a cluster node has no default one).
fn parse_node(node: &str) -> Result<(String, u16), String> {
    let node = node.trim();
    let Some((host, port)) = node.rsplit_once(':') else {
        return Err(format!("{node:?} is not host:port"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match port.parse::<u16>() {
        Ok(port) if !host.is_empty() && port > 0 => Ok((host.to_owned(), port)),
        _ => Err(format!("{node:?} is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_must_be_host_and_port() {
        assert_eq!(parse_node("h:7000"), Ok(("h".into(), 7000)));
        assert_eq!(parse_node(" [::1]:7001 "), Ok(("::1".into(), 7001)));
        for bad in ["h", "h:", ":7000", "h:0", "h:x"] {
            assert!(parse_node(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_database_is_refused_and_the_password_not_shown() {
        use redis::IntoConnectionInfo;
        let url = "redis://:s3cret@h/2".into_connection_info().unwrap();
        let err = client(&url, &["h:7000".into()], None, "redis://:***@h/2").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("database 2") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
