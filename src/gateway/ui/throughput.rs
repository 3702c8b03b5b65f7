//! Throughput from the stats totals: each time the queues page is shown,
//! the queue's count of finished jobs is kept with the time, and the rate is
//! the change against the oldest count of the last few minutes. Kept in
//! memory per gateway process: a first look shows the totals only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts older than this are dropped.
const WINDOW: Duration = Duration::from_secs(300);
/// A rate needs counts at least this far apart.
const SHORTEST: Duration = Duration::from_secs(1);
/// At most one count kept per this interval.
const SPACING: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Throughput {
    samples: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
}

/// Jobs finished per second, over `over`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_s: f64,
    pub over: Duration,
}

impl Throughput {
    /// Records that `queue` has finished `done` jobs by `now`; the rate
    /// since the oldest count still in the window, if one is old enough.
    pub fn observe(&self, queue: &str, done: u64, now: Instant) -> Option<Rate> {
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let samples = all.entry(queue.to_owned()).or_default();
        while samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            samples.pop_front();
        }
        // Totals went down: the queue was deleted and made again.
        if samples.back().is_some_and(|(_, n)| *n > done) {
            samples.clear();
        }
        if samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= SPACING)
        {
            samples.push_back((now, done));
        }
        let (first_t, first_n) = *samples.front()?;
        let over = now.duration_since(first_t);
        (over >= SHORTEST).then(|| Rate {
            per_s: (done - first_n) as f64 / over.as_secs_f64(),
            over,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_change_over_the_window() {
        let t = Throughput::default();
        let start = Instant::now();
        assert_eq!(t.observe("q", 100, start), None);
        let r = t
            .observe("q", 150, start + Duration::from_secs(10))
            .unwrap();
        assert_eq!(r.per_s, 5.0);
        assert_eq!(r.over, Duration::from_secs(10));
        let r = t
            .observe("q", 150, start + Duration::from_secs(200))
            .unwrap();
        assert_eq!(r.per_s, 0.25);
        // Older counts leave the window.
        let r = t
            .observe("q", 150, start + Duration::from_secs(400))
            .unwrap();
        assert_eq!((r.per_s, r.over), (0.0, Duration::from_secs(200)));
        // A reset starts over.
        assert_eq!(t.observe("q", 3, start + Duration::from_secs(401)), None);
        assert_eq!(t.observe("other", 1, start), None);
    }
}
