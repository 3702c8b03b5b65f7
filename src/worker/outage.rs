//! Redis outages as every loop sees them: logged once when they start and
//! once when they end (not once per failed call), reflected in readiness and
//! counted in metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::health::metrics::REDIS_ERRORS;
use crate::health::HealthState;
use crate::queue::QueueError;

/// First wait after a failed Redis call; doubles up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_millis(100);
pub const RETRY_MAX: Duration = Duration::from_secs(5);

pub struct Outage {
    down: AtomicBool,
    /// The last failure was Redis refusing our credentials.
    auth: AtomicBool,
    ended_at: Mutex<Option<Instant>>,
    last_failure: Mutex<Option<Instant>>,
    health: Arc<HealthState>,
}

impl Outage {
    pub fn new(health: Arc<HealthState>) -> Self {
        Outage {
            down: AtomicBool::new(false),
            auth: AtomicBool::new(false),
            ended_at: Mutex::new(None),
            last_failure: Mutex::new(None),
            health,
        }
    }

    /// Records a failed call made by `op`.
    pub fn failed(&self, op: &str, err: &QueueError) {
        metrics::counter!(REDIS_ERRORS).increment(1);
        if !err.is_unavailable() {
            // Redis answered with an error: not an outage, but worth a line.
            tracing::warn!(op, error = %err, "redis call failed");
            return;
        }
        self.health.set_redis_down(&err.to_string());
        if let Ok(mut t) = self.last_failure.lock() {
            *t = Some(Instant::now());
        }
        let was_down = self.down.swap(true, Ordering::Relaxed);
        // The cause is logged again when it turns into a refusal of our
        // credentials (a dropped connection that cannot log in again).
        let auth = err.is_auth();
        let auth_before = self.auth.swap(auth, Ordering::Relaxed);
        if !was_down || (auth && !auth_before) {
            if auth {
                tracing::warn!(op, error = %err, "redis refuses this worker's credentials; retrying with backoff");
            } else {
                tracing::warn!(op, error = %err, "redis unreachable; retrying with backoff");
            }
        }
    }

    /// Records a successful call.
    pub fn ok(&self) {
        if self.down.load(Ordering::Relaxed) && self.just_failed() {
            // A reply already on its way when Redis went away (no retry can
            // have happened this soon) says nothing about Redis now: ending
            // the outage on it would log the same outage twice.
            return;
        }
        self.health.set_redis_ok(true);
        self.auth.store(false, Ordering::Relaxed);
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("redis reachable again; resuming");
            if let Ok(mut t) = self.ended_at.lock() {
                *t = Some(Instant::now());
            }
        }
    }

    /// Records that Redis answered but refused this worker's heartbeat (out
    /// of memory, say). Such a refusal silences every worker's heartbeat
    /// alike, so once it passes the others' look as old as after an
    /// outage: the reaper gives them the same grace ([`Outage::since_last`]
    /// restarts) before judging anyone dead.
    pub fn heartbeat_refused(&self) {
        if let Ok(mut t) = self.ended_at.lock() {
            *t = Some(Instant::now());
        }
    }

    fn just_failed(&self) -> bool {
        self.last_failure
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() < RETRY_BASE)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Time since the last outage ended or a heartbeat was refused (`None`
    /// if neither happened).
    pub fn since_last(&self) -> Option<Duration> {
        self.ended_at
            .lock()
            .ok()
            .and_then(|t| t.map(|i| i.elapsed()))
    }
}

/// Delay before retry number `failures` (0-based) of a failed Redis call.
pub fn retry_delay(failures: u32) -> Duration {
    super::backoff::backoff_random(failures, RETRY_BASE, RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_in_flight_when_redis_went_away_does_not_end_the_outage() {
        let outage = Outage::new(Arc::new(HealthState::new("w".into(), vec![], 1)));
        let down = QueueError::Unavailable {
            op: "fetch",
            message: "connection refused".into(),
        };
        outage.failed("fetch", &down);
        outage.ok();
        assert!(
            outage.is_down(),
            "a success right after the failure proves nothing"
        );
        std::thread::sleep(RETRY_BASE);
        outage.ok();
        assert!(!outage.is_down());
        assert!(outage.since_last().is_some());
    }
}
