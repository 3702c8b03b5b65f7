//! What the side port reports, shared between the worker's loops (writers) and
//! the HTTP handlers (readers). Plain atomics: reading it never blocks a job.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Live facts about one worker process.
#[derive(Debug)]
pub struct HealthState {
    pub worker_id: String,
    pub version: &'static str,
    pub queues: Vec<String>,
    pub concurrency: usize,
    started: Instant,
    /// Whether the last Redis call succeeded; flipped by every loop that talks
    /// to Redis, so readiness follows outages within a second.
    redis_ok: AtomicBool,
    /// Milliseconds since `started` when Redis went down (0: not reached
    /// yet since start-up); meaningless while `redis_ok`.
    redis_down_at_ms: AtomicU64,
    /// Why the last Redis call failed, while Redis is down.
    redis_error: Mutex<Option<String>>,
    /// Milliseconds since `started` of the last successful heartbeat.
    last_heartbeat_ms: AtomicU64,
    /// Microseconds of the last PING.
    redis_ping_us: AtomicU64,
    shutting_down: AtomicBool,
    /// Set when Redis keeps refusing to settle jobs: the worker is stopping
    /// with an error and must not look healthy meanwhile.
    stalled: AtomicBool,
    in_flight: AtomicUsize,
    /// Per queue: pending, active, delayed, dead (refreshed periodically).
    depths: Mutex<Vec<(String, [u64; 4])>>,
    /// Per MCP server: whether a process of it is up.
    mcp: Mutex<Vec<(String, bool)>>,
}

/// How old a heartbeat may be before `/readyz` says not ready.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(5);

impl HealthState {
    pub fn new(worker_id: String, queues: Vec<String>, concurrency: usize) -> Self {
        Self {
            worker_id,
            version: env!("CARGO_PKG_VERSION"),
            queues,
            concurrency,
            started: Instant::now(),
            redis_ok: AtomicBool::new(false),
            redis_down_at_ms: AtomicU64::new(0),
            redis_error: Mutex::new(None),
            last_heartbeat_ms: AtomicU64::new(u64::MAX),
            redis_ping_us: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            depths: Mutex::new(Vec::new()),
            mcp: Mutex::new(Vec::new()),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn set_redis_ok(&self, ok: bool) {
        let was_ok = self.redis_ok.swap(ok, Ordering::Relaxed);
        if ok {
            if let Ok(mut e) = self.redis_error.lock() {
                *e = None;
            }
        } else if was_ok {
            self.redis_down_at_ms
                .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Redis is down: `error` says why (the failed call's message).
    pub fn set_redis_down(&self, error: &str) {
        self.set_redis_ok(false);
        if let Ok(mut e) = self.redis_error.lock() {
            *e = Some(error.to_owned());
        }
    }

    pub fn redis_ok(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed)
    }

    /// How long Redis has been down (since start-up when it was never
    /// reached); `None` while it answers.
    pub fn redis_down_for(&self) -> Option<Duration> {
        if self.redis_ok() {
            return None;
        }
        let at = Duration::from_millis(self.redis_down_at_ms.load(Ordering::Relaxed));
        Some(self.started.elapsed().saturating_sub(at))
    }

    /// Why the last Redis call failed, while Redis is down.
    pub fn redis_error(&self) -> Option<String> {
        if self.redis_ok() {
            return None;
        }
        self.redis_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn record_ping(&self, rtt: Duration) {
        self.redis_ping_us
            .store(rtt.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn redis_ping(&self) -> Duration {
        Duration::from_micros(self.redis_ping_us.load(Ordering::Relaxed))
    }

    pub fn record_heartbeat(&self) {
        self.last_heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last successful heartbeat; `None` before the first.
    pub fn heartbeat_age(&self) -> Option<Duration> {
        let at = self.last_heartbeat_ms.load(Ordering::Relaxed);
        if at == u64::MAX {
            return None;
        }
        Some(
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(at)),
        )
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Ready again after a wind-down that was not a stop (a worker that
    /// starts again on a queue's new shards).
    pub fn set_shutting_down_to(&self, on: bool) {
        self.shutting_down.store(on, Ordering::Relaxed);
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn set_stalled(&self) {
        self.stalled.store(true, Ordering::Relaxed);
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    pub fn job_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn job_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn set_depths(&self, depths: Vec<(String, [u64; 4])>) {
        if let Ok(mut d) = self.depths.lock() {
            *d = depths;
        }
    }

    pub fn set_mcp_servers(&self, servers: Vec<(String, bool)>) {
        if let Ok(mut m) = self.mcp.lock() {
            *m = servers;
        }
    }

    /// Per MCP server: its name and whether a process of it is up.
    pub fn mcp_servers(&self) -> Vec<(String, bool)> {
        self.mcp.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Per queue `[pending, active, delayed, dead]`.
    pub fn depths(&self) -> Vec<(String, [u64; 4])> {
        self.depths.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// The first failing readiness check, if any.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.stalled() {
            return Some("settle");
        }
        if self.shutting_down() {
            return Some("shutting_down");
        }
        if !self.redis_ok() {
            return Some("redis");
        }
        match self.heartbeat_age() {
            Some(age) if age <= HEARTBEAT_STALE_AFTER => None,
            _ => Some("heartbeat"),
        }
    }
}
