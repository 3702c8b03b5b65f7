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
    /// It exited at once (most often: the port, or a cluster node's bus
    /// port, was taken between choosing it and binding it), or another
    /// server answered on its port.
    #[error("redis-server on port {port} did not start: {why}")]
    NotStarted { port: u16, why: String },
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
    /// A free port can be taken by someone else before the server binds
    /// it: then it tries another.
    pub fn start_with(args: &[&str]) -> Result<Self, ServerError> {
        let mut tries = 0;
        loop {
            match Self::start_on(free_port()?, args, true) {
                Err(ServerError::NotStarted { .. }) if tries < 4 => tries += 1,
                other => return other,
            }
        }
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
        let ready = self.wait_ready();
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let answer = self.answer();
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(ServerError::NotStarted {
                    port: self.port,
                    why: format!("it exited ({status}): is the port taken?"),
                });
            }
            match answer {
                Answer::Ours => return Ok(()),
                // Up, but whose? Ours, if our child still runs once a
                // failed bind would have ended it.
                Answer::Unsure => {
                    std::thread::sleep(Duration::from_millis(150));
                    if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                        return Err(ServerError::NotStarted {
                            port: self.port,
                            why: format!("it exited ({status}): is the port taken?"),
                        });
                    }
                    return Ok(());
                }
                Answer::Other(other) => {
                    return Err(ServerError::NotStarted {
                        port: self.port,
                        why: format!("another redis-server (pid {other}) answers there"),
                    })
                }
                Answer::None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Err(ServerError::NotReady { port: self.port })
    }

    /// Who answers on the port: the server's `INFO server` names its pid,
    /// so a server of someone else's that took the port is not taken for
    /// ours. A server that asks for a password (`-NOAUTH`), or speaks only
    /// TLS, is up but cannot say.
    fn answer(&self) -> Answer {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return Answer::None;
        };
        if !self.plain_ping {
            return Answer::Unsure;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"INFO server\r\n").is_err() {
            return Answer::None;
        }
        // The reply is a bulk string of about 1.5 KB; the pid is in its
        // middle. Read until it is seen, or the reply ends.
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if text.starts_with('-') {
                // "-LOADING": not ready yet; any other error (NOAUTH) is up.
                return if text.starts_with("-LOADING") {
                    Answer::None
                } else {
                    Answer::Unsure
                };
            }
            if let Some(pid) = process_id(&text) {
                return match self.pid() {
                    // INFO answers while the data loads; PING does not.
                    Some(p) if p == pid && self.pings() => Answer::Ours,
                    Some(p) if p == pid => Answer::None,
                    _ => Answer::Other(pid),
                };
            }
            if reply.len() > 64 * 1024 {
                break;
            }
        }
        Answer::None
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

impl RedisServer {
    /// A PING is answered, and not with "-LOADING" (an AOF or RDB being
    /// read at start): the server takes commands.
    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok()
            && matches!(s.read(&mut buf), Ok(n) if n > 0 && !buf[..n].starts_with(b"-LOADING"))
    }
}

/// Who answered on a server's port.
enum Answer {
    None,
    Ours,
    /// A server that cannot say its pid: TLS only, or asking for a
    /// password (`-NOAUTH`).
    Unsure,
    /// A server with this pid.
    Other(u32),
}

/// The `process_id` an `INFO server` reply names, once the line is whole.
fn process_id(info: &str) -> Option<u32> {
    let rest = &info[info.find("process_id:")? + "process_id:".len()..];
    let end = rest.find('\r')?;
    rest[..end].trim().parse().ok()
}

/// A port nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_is_read_from_a_whole_info_line_only() {
        let info = "$1500\r\n# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\nrun_id:x\r\n";
        assert_eq!(process_id(info), Some(4242));
        assert_eq!(process_id("# Server\r\nprocess_id:42"), None, "cut short");
        assert_eq!(process_id("# Server\r\n"), None);
    }

    /// A port someone else's server holds is not mistaken for ours (its
    /// PING would have answered), and `start_with` moves on to another.
    #[test]
    fn a_port_taken_by_another_server_is_not_taken_for_ours() {
        let theirs = RedisServer::start().expect("a server starts");
        match RedisServer::start_on(theirs.port(), &[], true) {
            Err(ServerError::NotStarted { port, why }) => {
                assert_eq!(port, theirs.port());
                println!("refused as expected: {why}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("a server on a taken port was taken for ready"),
        }
        let ours = RedisServer::start().expect("another server starts");
        assert_ne!(ours.port(), theirs.port());
    }
}
