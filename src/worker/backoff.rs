//! Retry delays: exponential with "equal jitter", so a burst of failures does
//! not come back as a burst of retries, yet no retry comes back too early.

use std::time::Duration;

/// Delay before attempt `attempt + 1` after attempt `attempt` (0-based)
/// failed: half of `base * 2^attempt` (capped at `max`) plus a random share
/// of the other half. `jitter` is uniform in `[0, 1)`.
pub fn backoff(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 2u64.saturating_pow(attempt.min(63));
    let exp = (base.as_millis() as u64).saturating_mul(factor);
    let capped = exp.min(max.as_millis() as u64);
    let half = capped / 2;
    let jitter = jitter.clamp(0.0, 1.0);
    Duration::from_millis(half + ((capped - half) as f64 * jitter) as u64)
}

/// [`backoff`] with a fresh random jitter.
pub fn backoff_random(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff(attempt, base, max, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(1000);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_per_attempt() {
        assert_eq!(backoff(0, BASE, MAX, 1.0), Duration::from_millis(1000));
        assert_eq!(backoff(1, BASE, MAX, 1.0), Duration::from_millis(2000));
        assert_eq!(backoff(3, BASE, MAX, 1.0), Duration::from_millis(8000));
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        assert_eq!(backoff(2, BASE, MAX, 0.0), Duration::from_millis(2000));
        assert_eq!(backoff(2, BASE, MAX, 0.5), Duration::from_millis(3000));
        for _ in 0..1000 {
            let d = backoff_random(2, BASE, MAX);
            assert!(d >= Duration::from_millis(2000) && d <= Duration::from_millis(4000));
        }
    }

    #[test]
    fn caps_at_max_even_for_huge_attempts() {
        assert_eq!(backoff(10, BASE, MAX, 1.0), MAX);
        assert_eq!(backoff(u32::MAX, BASE, MAX, 1.0), MAX);
        assert_eq!(backoff(u32::MAX, BASE, MAX, 0.0), MAX / 2);
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(backoff(0, BASE, MAX, 7.0), Duration::from_millis(1000));
        assert_eq!(backoff(0, BASE, MAX, -1.0), Duration::from_millis(500));
    }
}
