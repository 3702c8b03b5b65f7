//! A Redis Cluster on free ports, as the harness starts a lone
//! `redis-server`: three masters and three replicas
//! (`redis-server --cluster-enabled yes`, then `redis-cli --cluster create
//! ... --cluster-replicas 1`), ready once every node reports
//! `cluster_state:ok`. Tests may SIGKILL and restart nodes.

use std::process::Command;
use std::time::{Duration, Instant};

use toolq::redis_server::{free_port, RedisServer};

/// How long a silent master stays in charge before its replica takes over.
pub const NODE_TIMEOUT_MS: u64 = 1000;

pub struct Cluster {
    /// The nodes, in creation order: `redis-cli` makes the first three the
    /// masters; which node is a master changes with a failover.
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            timeout.as_str(),
            // A replica that lost its master a while ago may still take over.
            "--cluster-replica-validity-factor",
            "0",
        ];
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                // The cluster bus listens on the port + 10,000 unless told
                // otherwise, which a free port above 55,535 does not have
                // (the node then refuses to start): it gets a free port of
                // its own, another if that one was taken meanwhile.
                let mut tries = 0;
                loop {
                    let bus = free_port().expect("a free port").to_string();
                    let mut node_args = args.to_vec();
                    node_args.extend(["--cluster-port", bus.as_str()]);
                    match RedisServer::start_with(&node_args) {
                        Ok(node) => break node,
                        Err(e) if tries < 4 => {
                            eprintln!("cluster node: {e}; again with other ports");
                            tries += 1;
                        }
                        Err(e) => panic!("a cluster node starts: {e}"),
                    }
                }
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster { nodes };
        cluster.wait_ok(Duration::from_secs(60)).await;
        cluster
    }

    /// The seed nodes, as `TOOLQ_REDIS_CLUSTER_NODES` takes them.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn seed_list(&self) -> Vec<String> {
        self.seeds().split(',').map(String::from).collect()
    }

    /// Polls until every running node says `cluster_state:ok` with every
    /// slot served, and agrees on the same masters.
    pub async fn wait_ok(&self, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.all_ok().await {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cluster is not ok within {within:?}");
    }

    async fn all_ok(&self) -> bool {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let Some(info) =
                node_cmd::<String>(node.port(), redis::cmd("CLUSTER").arg("INFO")).await
            else {
                return false;
            };
            if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                return false;
            }
        }
        true
    }

    /// The port of the master serving `key`'s slot now.
    pub async fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key).await;
        self.master_of_slot(slot).await
    }

    /// `key`'s slot, as Redis computes it.
    pub async fn slot_of(&self, key: &str) -> u16 {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            if let Some(slot) =
                node_cmd::<u16>(node.port(), redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await
            {
                return slot;
            }
        }
        panic!("no node answers CLUSTER KEYSLOT");
    }

    /// The port of the master serving `slot`, as the first node that
    /// answers sees it.
    pub async fn master_of_slot(&self, slot: u16) -> u16 {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let Some(slots) =
                node_cmd::<Vec<redis::Value>>(node.port(), redis::cmd("CLUSTER").arg("SLOTS"))
                    .await
            else {
                continue;
            };
            for range in slots {
                let Some((lo, hi, master)) = slot_range(range) else {
                    continue;
                };
                if (lo..=hi).contains(&slot) {
                    return master.1;
                }
            }
        }
        panic!("no node names a master for slot {slot}");
    }

    /// The distinct masters' ports.
    pub async fn master_ports(&self) -> Vec<u16> {
        let mut out = Vec::new();
        for slot in [0u16, 8000, 16383] {
            let p = self.master_of_slot(slot).await;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Queue names (with `prefix`), `per_master` whose keys live on each
    /// master, so a test's queues spread over the whole cluster.
    pub async fn queues_on_every_master(&self, prefix: &str, per_master: usize) -> Vec<String> {
        let masters = self.master_ports().await;
        let mut by_master: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
        while by_master.iter().any(|q| q.len() < per_master) {
            let name = super::queue_name(prefix);
            let port = self
                .master_of(&toolq::queue::QueueKeys::new(&name).pending)
                .await;
            if let Some(i) = masters.iter().position(|m| *m == port) {
                if by_master[i].len() < per_master {
                    by_master[i].push(name);
                }
            }
        }
        by_master.into_iter().flatten().collect()
    }

    /// The index into `nodes` of the node on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("a node of the cluster")
    }
}

/// `(first slot, last slot, (host, port) of the master)` of an entry of
/// `CLUSTER SLOTS`.
fn slot_range(range: redis::Value) -> Option<(u16, u16, (String, u16))> {
    let v: Vec<redis::Value> = redis::from_redis_value(range).ok()?;
    let lo = redis::from_redis_value(v.first()?.clone()).ok()?;
    let hi = redis::from_redis_value(v.get(1)?.clone()).ok()?;
    let m: Vec<redis::Value> = redis::from_redis_value(v.get(2)?.clone()).ok()?;
    let host = redis::from_redis_value(m.first()?.clone()).ok()?;
    let port = redis::from_redis_value(m.get(1)?.clone()).ok()?;
    Some((lo, hi, (host, port)))
}

/// A command on one node (no redirection followed); `None` when it does
/// not answer.
pub async fn node_cmd<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .ok()?;
    cmd.query_async(&mut c).await.ok()
}

impl Cluster {
    /// The node id of the node on `port` (`CLUSTER MYID`).
    pub async fn node_id(&self, port: u16) -> String {
        node_cmd(port, redis::cmd("CLUSTER").arg("MYID"))
            .await
            .expect("CLUSTER MYID")
    }

    /// The port of a replica of the master on `port` (`INFO replication`).
    pub async fn replica_of(&self, port: u16) -> u16 {
        let info: String = node_cmd(port, redis::cmd("INFO").arg("replication"))
            .await
            .expect("INFO replication");
        info.lines()
            .filter(|l| l.starts_with("slave"))
            .find_map(|l| {
                l.split(',')
                    .find_map(|f| f.strip_prefix("port=")?.parse().ok())
            })
            .expect("the master has a replica")
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self.index_of(port);
        self.nodes[i].stop();
    }

    /// Starts the node on `port` again, empty, with its `nodes.conf`: it
    /// rejoins as a replica of whichever node took its slots over. Waits
    /// until it is in sync.
    pub async fn restart(&mut self, port: u16) {
        let i = self.index_of(port);
        self.nodes[i].restart().expect("the node restarts");
        super::eventually(
            Duration::from_secs(30),
            "the restarted node syncs",
            || async move {
                let info: Option<String> =
                    node_cmd(port, redis::cmd("INFO").arg("replication")).await;
                info.is_some_and(|i| {
                    i.contains("role:slave") && i.contains("master_link_status:up")
                })
            },
        )
        .await;
        self.wait_ok(Duration::from_secs(30)).await;
    }

    /// Polls until the node on `port` is a master; the time it took.
    pub async fn wait_master(&self, port: u16, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            let info: Option<String> = node_cmd(port, redis::cmd("INFO").arg("replication")).await;
            if info.is_some_and(|i| i.contains("role:master")) {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the node on {port} was not promoted within {within:?}");
    }

    /// Cuts the replica on `replica` off from its master on `master` (a
    /// wrong `masterauth`, its link killed): the master's writes from now
    /// on exist on the master alone, as behind a lagging link.
    pub async fn cut_replica(&self, master: u16, replica: u16) {
        let _: () = node_cmd(
            replica,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("masterauth")
                .arg("not-the-password"),
        )
        .await
        .expect("CONFIG SET masterauth");
        let _: u64 = node_cmd(
            master,
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("replica"),
        )
        .await
        .expect("CLIENT KILL TYPE replica");
    }

    /// Moves `slot` from the master on `from` to the master on `to` the way
    /// `redis-cli --cluster reshard` does: `IMPORTING` / `MIGRATING`, its
    /// keys `MIGRATE`d in small steps (so clients meet `ASK` redirections
    /// and `TRYAGAIN` meanwhile), then the slot assigned to `to` everywhere.
    /// Returns the keys moved.
    pub async fn migrate_slot(&self, slot: u16, from: u16, to: u16) -> usize {
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let setslot = |state: &str, id: &str| {
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(id)
                .clone()
        };
        let _: () = node_cmd(to, &setslot("IMPORTING", &from_id))
            .await
            .expect("SETSLOT IMPORTING");
        let _: () = node_cmd(from, &setslot("MIGRATING", &to_id))
            .await
            .expect("SETSLOT MIGRATING");
        let mut moved = 0;
        loop {
            let keys: Vec<String> = node_cmd(
                from,
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(2),
            )
            .await
            .expect("GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: redis::Value = node_cmd(
                from,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("REPLACE")
                    .arg("KEYS")
                    .arg(&keys),
            )
            .await
            .expect("MIGRATE");
            moved += keys.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for port in [to, from] {
            let _: () = node_cmd(port, &setslot("NODE", &to_id))
                .await
                .expect("SETSLOT NODE");
        }
        for port in self.master_ports().await {
            let _: Option<()> = node_cmd(port, &setslot("NODE", &to_id)).await;
        }
        moved
    }
}
