//! A Redis Sentinel set-up on free ports, as the harness starts a lone
//! `redis-server`: one master, one replica, three sentinels (quorum 2) that
//! call the master down after a second, so a failover takes seconds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use toolq::redis_server::{free_port, RedisServer};

/// The master's name in the sentinels' configuration.
pub const SERVICE: &str = "toolq-test";
/// How long the sentinels wait before they call a silent master down.
/// Not less: on a loaded two-core CI machine a live master can miss its
/// pings for a second, and the sentinels then failed over a second time,
/// to the killed master just restarted empty (a CI run of 2026-12-04:
/// the promoted server ended a replica of the restarted one).
pub const DOWN_AFTER_MS: u64 = 3000;

/// Passwords of the master (and replica) and of the sentinels.
#[derive(Clone, Copy)]
pub struct Passwords {
    pub master: &'static str,
    pub sentinel: &'static str,
}

pub struct SentinelSet {
    /// The data servers; which one is the master changes with a failover.
    pub servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    passwords: Option<Passwords>,
}

struct SentinelProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelSet {
    /// Starts the five processes and returns once the replica is in sync and
    /// every sentinel knows the replica and the other two sentinels.
    pub async fn start(passwords: Option<Passwords>) -> SentinelSet {
        let auth: Vec<String> = match passwords {
            Some(p) => vec![
                "--requirepass".into(),
                p.master.into(),
                "--masterauth".into(),
                p.master.into(),
            ],
            None => Vec::new(),
        };
        let args: Vec<&str> = auth.iter().map(String::as_str).collect();
        let master = RedisServer::start_with(&args).expect("master starts");
        let port = master.port().to_string();
        let mut replica_args = args.clone();
        replica_args.extend(["--replicaof", "127.0.0.1", port.as_str()]);
        let replica = RedisServer::start_with(&replica_args).expect("replica starts");
        let sentinels = (0..3)
            .map(|_| spawn_sentinel(master.port(), passwords))
            .collect();
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
            passwords,
        };
        set.wait_ready(Duration::from_secs(30)).await;
        set
    }

    /// `redis+sentinel://` naming the three sentinels (and the passwords).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        match self.passwords {
            Some(p) => format!(
                "redis+sentinel://:{}@{}/{SERVICE}?sentinel_password={}",
                p.master,
                hosts.join(","),
                p.sentinel
            ),
            None => format!("redis+sentinel://{}/{SERVICE}", hosts.join(",")),
        }
    }

    /// A plain URL of data server `i`, to observe it directly.
    pub fn server_url(&self, i: usize) -> String {
        let port = self.servers[i].port();
        match self.passwords {
            Some(p) => format!("redis://:{}@127.0.0.1:{port}", p.master),
            None => format!("redis://127.0.0.1:{port}"),
        }
    }

    /// The port of the master the sentinels name now (asks each in turn).
    pub async fn master_port(&self) -> Option<u16> {
        for s in &self.sentinels {
            let reply: Option<Vec<String>> = self
                .sentinel_cmd(
                    s.port,
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(SERVICE),
                )
                .await;
            if let Some(port) = reply.and_then(|r| r.get(1)?.parse().ok()) {
                return Some(port);
            }
        }
        None
    }

    /// Index into `servers` of the master the sentinels name now.
    pub async fn master_index(&self) -> Option<usize> {
        let port = self.master_port().await?;
        self.servers.iter().position(|s| s.port() == port)
    }

    /// Cuts replica `replica` off from master `master`: it can no longer
    /// log in to it (a wrong `masterauth`) and its link is killed, so the
    /// master's writes from now on exist on the master alone, as behind a
    /// slow or broken link. The sentinels still see a healthy replica.
    pub async fn cut_replica(&self, master: usize, replica: usize) {
        let mut r = super::raw(&self.server_url(replica)).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg("not-the-password")
            .query_async(&mut r)
            .await
            .expect("CONFIG SET masterauth");
        let mut m = super::raw(&self.server_url(master)).await;
        let _: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query_async(&mut m)
            .await
            .expect("CLIENT KILL TYPE replica");
    }

    /// SIGKILLs data server `i`.
    pub fn kill(&mut self, i: usize) {
        self.servers[i].stop();
    }

    /// Polls until the sentinels name data server `i` as the master; the
    /// time it took.
    pub async fn wait_master(&self, i: usize, within: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.master_port().await == Some(self.servers[i].port()) {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server {i} was not promoted within {within:?}");
    }

    /// Starts data server `i` again, empty, as a replica of `master` (what
    /// an operator does with a failed master; the sentinels then list it as
    /// a replica again), and waits until it is in sync. It gets a fresh
    /// port: the killed server's port is free for anyone in the meantime
    /// (another test's server, a client's outgoing connection), and a
    /// server found there would never sync.
    pub async fn restart_as_replica(&mut self, i: usize, master: usize) {
        let master_port = self.servers[master].port().to_string();
        let mut args: Vec<String> = match self.passwords {
            Some(p) => vec![
                "--requirepass".into(),
                p.master.into(),
                "--masterauth".into(),
                p.master.into(),
            ],
            None => Vec::new(),
        };
        args.extend(["--replicaof".into(), "127.0.0.1".into(), master_port]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Dropped first: it removes its directory.
        drop(self.servers.remove(i));
        let server = RedisServer::start_with(&args).expect("old master restarts");
        self.servers.insert(i, server);
        let url = self.server_url(master);
        let start = Instant::now();
        while online_replicas(&url).await < 1 {
            if start.elapsed() > Duration::from_secs(30) {
                panic!(
                    "the restarted server did not sync within 30 s\nmaster:\n{}\nrestarted:\n{}",
                    replication_info(&url).await,
                    replication_info(&self.server_url(i)).await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self, within: Duration) {
        let url = self.server_url(0);
        super::eventually(within, "the replica syncs", || {
            let url = url.clone();
            async move { online_replicas(&url).await >= 1 }
        })
        .await;
        for s in &self.sentinels {
            super::eventually(
                within,
                "each sentinel knows the replica and the other sentinels",
                || async {
                    let replicas: Option<Vec<redis::Value>> = self
                        .sentinel_cmd(s.port, redis::cmd("SENTINEL").arg("REPLICAS").arg(SERVICE))
                        .await;
                    let peers: Option<Vec<redis::Value>> = self
                        .sentinel_cmd(s.port, redis::cmd("SENTINEL").arg("SENTINELS").arg(SERVICE))
                        .await;
                    replicas.is_some_and(|r| !r.is_empty()) && peers.is_some_and(|p| p.len() >= 2)
                },
            )
            .await;
        }
    }

    async fn sentinel_cmd<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> Option<T> {
        let url = match self.passwords {
            Some(p) => format!("redis://:{}@127.0.0.1:{port}", p.sentinel),
            None => format!("redis://127.0.0.1:{port}"),
        };
        let client = redis::Client::open(url).ok()?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)));
        let mut c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .ok()?;
        cmd.query_async(&mut c).await.ok()
    }
}

/// Replicas in `state=online` as the server at `url` sees them.
/// `INFO replication` of the server at `url`, or why it could not be read.
async fn replication_info(url: &str) -> String {
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let mut c = match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| e.to_string())
}

pub async fn online_replicas(url: &str) -> usize {
    let Ok(client) = redis::Client::open(url) else {
        return 0;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return 0;
    };
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count()
}

fn spawn_sentinel(master_port: u16, passwords: Option<Passwords>) -> SentinelProcess {
    let port = free_port().expect("a free port");
    let dir = std::env::temp_dir().join(format!("toolq-sentinel-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("sentinel dir");
    let mut conf = format!(
        "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
         sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {SERVICE} 5000\n\
         sentinel parallel-syncs {SERVICE} 1\n",
        dir = dir.display()
    );
    if let Some(p) = passwords {
        conf.push_str(&format!(
            "requirepass {}\nsentinel sentinel-pass {}\nsentinel auth-pass {SERVICE} {}\n",
            p.sentinel, p.sentinel, p.master
        ));
    }
    // The sentinel rewrites its file: it must be its own and writable.
    let file = dir.join("sentinel.conf");
    std::fs::write(&file, conf).expect("sentinel.conf");
    let child = Command::new("redis-server")
        .arg(&file)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server --sentinel starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sentinel on {port} never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    SentinelProcess { child, port, dir }
}
