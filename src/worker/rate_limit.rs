//! The per-tool rate limit (`tools.<name>.rate_limit`), shared by every
//! worker through one atomic script in Redis (a sliding window on Redis's
//! clock).
//!
//! A job over the limit is neither failed nor spun on: it goes back to the
//! delayed set, due when the oldest call leaves the window, with its attempt
//! count untouched (attempts count the job's own failures only), and frees
//! its permit for other work meanwhile.

use std::time::Duration;

use metrics::counter;
use rand::Rng;

use super::attempt::{Attempt, Parking};
use super::outage::retry_delay;
use crate::health::metrics::RATE_LIMITED;
use crate::job;
use crate::queue::RateSlot;
use crate::tools::RateLimit;

/// Whether the call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Parked in the delayed set (or taken over meanwhile): nothing to write.
    Parked,
    /// Cancelled while waiting.
    Cancelled,
}

/// Takes a slot of the job's tool, or parks the job until one frees.
pub async fn admit(attempt: &Attempt) -> Admit {
    let (ctx, tool) = (&attempt.ctx, &attempt.job.tool);
    let Some(limit) = ctx.config.tools.rate_limit(tool) else {
        return Admit::Go;
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut failures = 0;
    loop {
        let taken = ctx
            .broker
            .rate_limit_take(tool, limit.max, limit.per, &token)
            .await;
        let free_at = match taken {
            Ok(RateSlot::Taken) => return Admit::Go,
            Ok(RateSlot::FullUntil(at)) => at,
            Err(e) => {
                // Strict while Redis is away: calling unmetered could spend
                // the upstream quota (and the job cannot be acked anyway).
                ctx.outage.failed("rate_limit", &e);
                tokio::select! {
                    _ = attempt.cancel.cancelled() => return Admit::Cancelled,
                    _ = tokio::time::sleep(retry_delay(failures)) => {}
                }
                failures += 1;
                continue;
            }
        };
        let due = free_at + jitter(limit);
        match attempt.park(due).await {
            Parking::Cancelled => return Admit::Cancelled,
            // The slot freed while we parked: try again at once.
            Parking::DueNow => continue,
            Parking::Parked => {
                counter!(RATE_LIMITED, "tool" => tool.clone()).increment(1);
                tracing::debug!(limit = %limit, due_in_ms = due.saturating_sub(job::now_ms()),
                    "rate limited; parked until a slot frees");
                return Admit::Parked;
            }
        }
    }
}

/// Jobs parked by one full window would all come back at the same instant
/// and all but one would be parked again; spreading them over one slot's
/// share of the window avoids most of that churn.
fn jitter(limit: RateLimit) -> u64 {
    let slot = (limit.per / limit.max.max(1)).min(Duration::from_secs(5));
    let slot_ms = slot.as_millis() as u64;
    if slot_ms == 0 {
        return 0;
    }
    rand::rng().random_range(0..slot_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_one_slot() {
        let limit = RateLimit::new(5, Duration::from_secs(1));
        assert!((0..1000).all(|_| jitter(limit) < 200));
        let limit = RateLimit::new(1, Duration::from_secs(3600));
        assert!((0..1000).all(|_| jitter(limit) < 5000));
        assert_eq!(jitter(RateLimit::new(5000, Duration::from_secs(1))), 0);
    }
}
