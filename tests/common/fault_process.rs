//! Real `toolq worker` processes for the fault tests: spawned with the test
//! tools enabled, logs in a file per process, and the signals and `/proc`
//! reads the tests use on them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use toolq::queue::{keys, QueueKeys};

/// A worker process; killed (SIGKILL) if still running when dropped.
pub struct WorkerProcess {
    pub child: Child,
    /// stdout and stderr of the process.
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Exit status once it exited, polling (the child is ours to reap).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing `needle`.
    pub fn log_lines(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// User plus system CPU time so far, in clock ticks (`/proc/<pid>/stat`).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the command name, which is in parentheses and may
        // contain spaces: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

/// Share of one core each process used over the same `window`.
pub fn cpu_shares(workers: &[WorkerProcess], window: Duration) -> Vec<f64> {
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let before: Vec<u64> = workers.iter().map(WorkerProcess::cpu_ticks).collect();
    let start = Instant::now();
    std::thread::sleep(window);
    let secs = start.elapsed().as_secs_f64();
    workers
        .iter()
        .zip(before)
        .map(|(w, b)| (w.cpu_ticks() - b) as f64 / hz / secs)
        .collect()
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `toolq worker` on `queue` with the test tools on, no side port and
/// `extra_env` on top (e.g. `TOOLQ_SHUTDOWN_GRACE_S`).
pub fn spawn_worker_process(
    url: &str,
    queue: &str,
    concurrency: usize,
    extra_env: &[(&str, &str)],
) -> WorkerProcess {
    spawn_worker_on(url, &[queue], concurrency, extra_env)
}

/// Where a worker process spawned for `queue` runs and logs: its working
/// directory, so a test can put a `config/toolq.toml` there for it to read.
pub fn worker_dir(queue: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(queue)
}

/// [`spawn_worker_process`] serving several queues (logs under the first).
pub fn spawn_worker_on(
    url: &str,
    queues: &[&str],
    concurrency: usize,
    extra_env: &[(&str, &str)],
) -> WorkerProcess {
    let dir = worker_dir(queues[0]);
    std::fs::create_dir_all(&dir).expect("log dir");
    let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let log = dir.join(format!("worker-{n}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolq"));
    cmd.arg("worker");
    // No side port unless the test asks for one (TOOLQ_HTTP_ADDR).
    if !extra_env.iter().any(|(k, _)| *k == "TOOLQ_HTTP_ADDR") {
        cmd.args(["--http-addr", "off"]);
    }
    for queue in queues {
        cmd.args(["--queue", queue]);
    }
    cmd.arg("--concurrency")
        .arg(concurrency.to_string())
        // Not the repository: no config/toolq.toml, and any core file lands
        // out of the way.
        .current_dir(&dir)
        .env("TOOLQ_REDIS_URL", url)
        .env("TOOLQ_ENABLE_TEST_TOOLS", "1")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // The crash tool aborts: no core dumps from the tests.
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
    }
    let child = cmd.spawn().expect("spawn toolq worker");
    WorkerProcess { child, log }
}

/// Registered workers of `queue` by pid, from their registration documents.
pub async fn worker_ids_by_pid(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
) -> HashMap<u32, String> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(&QueueKeys::new(queue).workers)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap();
    let mut out = HashMap::new();
    for id in ids {
        let info: Option<String> = redis::cmd("GET")
            .arg(keys::worker_info(&id))
            .query_async(con)
            .await
            .unwrap();
        if let Some(pid) = info
            .and_then(|i| serde_json::from_str::<Value>(&i).ok())
            .and_then(|v| v["pid"].as_u64())
        {
            out.insert(pid as u32, id);
        }
    }
    out
}

/// The worker id of process `pid`, waiting for it to register.
pub async fn worker_id_of(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
    pid: u32,
    within: Duration,
) -> String {
    let start = Instant::now();
    loop {
        if let Some(id) = worker_ids_by_pid(con, queue).await.remove(&pid) {
            return id;
        }
        assert!(start.elapsed() < within, "worker {pid} did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Payloads a worker holds (active hash and landing list), by job id: read
/// with the same Lua the worker's scripts use for the active hash's layout.
pub async fn held_jobs(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
    worker: &str,
) -> Vec<String> {
    let k = QueueKeys::new(queue);
    let script = redis::Script::new(concat!(
        include_str!("../../src/queue/scripts/held.lua"),
        include_str!("../../src/queue/scripts/held_jobs.lua")
    ));
    let held: Vec<String> = script
        .key(k.active(worker))
        .key(k.landing(worker))
        .invoke_async(con)
        .await
        .unwrap();
    held.iter()
        .map(|p| {
            let v: Value = serde_json::from_str(p).expect("held payload is JSON");
            v["id"].as_str().expect("held job has an id").to_owned()
        })
        .collect()
}

/// `TOOLQ_FAULT_SCALE` (default 1.0) times `n`, at least 1.
pub fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("TOOLQ_FAULT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}
