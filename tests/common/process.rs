//! The real `toolq` binary as a child process, with its output captured, for
//! tests that must see what an operator sees (logs, exit codes) or that run
//! the worker exactly as a container would.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TOOLQ: &str = env!("CARGO_BIN_EXE_toolq");

/// A `toolq` command with a clean environment: no `TOOLQ_*` or `RUST_LOG`
/// from the developer's shell leaks in, and `config/toolq.toml` is not read
/// (the working directory is the crate's `tests/` folder, which has none).
pub fn toolq(args: &[&str]) -> Command {
    let mut cmd = Command::new(TOOLQ);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "toolq=info")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running child whose stdout and stderr are read into buffers as they come.
pub struct Toolq {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Toolq {
    pub fn spawn(mut cmd: Command) -> Toolq {
        let mut child = cmd.spawn().expect("toolq binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().expect("piped stdout"), stdout.clone()),
            drain(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Toolq {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Both streams, for assertions that a secret appears in neither.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Polls (without blocking the runtime for long) until stderr contains
    /// `needle`; panics with what was logged when it does not in time.
    pub async fn wait_for_stderr(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < within,
                "no {needle:?} on stderr within {within:?}; got:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM: a graceful stop, as `docker stop` sends it.
    pub fn terminate(&self) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM sent");
    }

    /// Waits for the exit (killing the child after `within`) and for its
    /// output to be read to the end.
    pub async fn wait(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait on toolq") {
                break status;
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                panic!(
                    "toolq did not exit within {within:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }
}

impl Drop for Toolq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Runs a one-shot command (`enqueue`, `result`) to the end.
pub async fn run(cmd: Command, within: Duration) -> (ExitStatus, String, String) {
    let mut p = Toolq::spawn(cmd);
    let status = p.wait(within).await;
    (status, p.stdout(), p.stderr())
}

/// `toolq ARGS` against the Redis at `url`, to the end (30 s at most):
/// exit code, stdout, stderr.
pub async fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = toolq(args);
    cmd.env("TOOLQ_REDIS_URL", url);
    let (status, out, err) = run(cmd, Duration::from_secs(30)).await;
    (status.code().unwrap_or(-1), out, err)
}

/// [`cli`] that must exit 0; its stdout.
pub async fn cli_ok(url: &str, args: &[&str]) -> String {
    let (code, out, err) = cli(url, args).await;
    assert_eq!(code, 0, "toolq {args:?} failed: {out}{err}");
    out
}
