//! A throw-away `redis-server` child on a free port: what `toolq demo` starts
//! when no Redis answers, and what the tests and the benchmark start so they
//! can stop and restart a real server at will.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start redis-server (is it installed? `apt-get install redis-server`): {0}")]
    Spawn(std::io::Error),
    #[error("redis-server on port {port} did not become ready within {READY_TIMEOUT:?}")]
    NotReady { port: u16 },
    #[error("redis-server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running child `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    /// Whether readiness can be checked with a plaintext PING (not on TLS).
    plain_ping: bool,
}

impl RedisServer {
    /// A server with no persistence on a free port.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with(&[])
    }

    /// A server with extra `redis-server` arguments (e.g. `--appendonly yes`).
    pub fn start_with(args: &[&str]) -> Result<Self, ServerError> {
        let port = free_port()?;
        Self::start_on(port, args, true)
    }

    /// Full control: `port`, extra arguments, and whether the port speaks
    /// plaintext (false for TLS-only servers; readiness is then a TCP connect).
    pub fn start_on(port: u16, args: &[&str], plain_ping: bool) -> Result<Self, ServerError> {
        let dir = std::env::temp_dir().join(format!("toolq-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            plain_ping,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no");
        if !self.args.iter().any(|a| a == "--appendonly") {
            cmd.arg("--appendonly").arg("no");
        }
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().map_err(ServerError::Spawn)?);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::NotReady { port: self.port })
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if !self.plain_ping {
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 64];
        // Any reply will do: "-NOAUTH" proves it is up as well as "+PONG";
        // "-LOADING" does not.
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if n > 0 && !buf[..n].starts_with(b"-LOADING"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its files (AOF, configs written by tests).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The child's pid, e.g. to measure its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, directory and arguments.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
