//! Why the running jobs of one queue may have to stop early: this worker
//! lost them to another (declared dead on the queue), or an operator
//! cancelled some of them. One lifeline per queue is shared by all of its
//! jobs, not a token per job, so the job path pays one reference count and
//! no allocation, map or lock for it. A cancel (rare) wakes the queue's
//! running jobs, and each checks whether it was the one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Lifeline {
    /// Set when the worker learns it was declared dead on the queue: its
    /// jobs there may be someone else's now. A lost lifeline stays lost;
    /// jobs fetched afterwards get a new one.
    lost: AtomicBool,
    /// Slots of the jobs operators cancelled here, as the heartbeat last
    /// read them.
    cancelled: Mutex<Vec<u64>>,
    /// Whether `cancelled` holds any: what the job path reads instead of
    /// the lock.
    any_cancelled: AtomicBool,
    /// Wakes the waiting jobs when either of the above changes.
    wake: Notify,
}

impl Lifeline {
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Stops every job of this lifeline: they belong to someone else now.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Whether an operator cancelled the job in `slot`.
    pub fn is_cancelled(&self, slot: u64) -> bool {
        self.any_cancelled.load(Ordering::Acquire)
            && self
                .cancelled
                .lock()
                .map(|c| c.contains(&slot))
                .unwrap_or(false)
    }

    /// Returns once the job in `slot` must stop: the lifeline was lost or
    /// the job was cancelled.
    pub async fn interrupted(&self, slot: u64) {
        loop {
            // Created before the check: a wake-up between the two is kept
            // (tokio's `Notified` counts `notify_waiters` calls from its
            // creation on), so no cancel slips through.
            let woken = self.wake.notified();
            if self.is_lost() || self.is_cancelled(slot) {
                return;
            }
            woken.await;
        }
    }

    /// Takes the slots operators have cancelled here (the heartbeat's whole
    /// read, not a delta) and wakes the jobs when a slot is new. Returns the
    /// new slots.
    pub fn set_cancelled(&self, slots: Vec<u64>) -> Vec<u64> {
        let Ok(mut current) = self.cancelled.lock() else {
            return Vec::new();
        };
        let new: Vec<u64> = slots
            .iter()
            .copied()
            .filter(|s| !current.contains(s))
            .collect();
        self.any_cancelled
            .store(!slots.is_empty(), Ordering::Release);
        *current = slots;
        drop(current);
        if !new.is_empty() {
            self.wake.notify_waiters();
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    async fn stops_within(l: &Arc<Lifeline>, slot: u64, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), l.interrupted(slot))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_cancel_stops_only_its_own_slot() {
        let l = Arc::new(Lifeline::default());
        let (a, b) = (
            tokio::spawn({
                let l = l.clone();
                async move { stops_within(&l, 7, 2000).await }
            }),
            tokio::spawn({
                let l = l.clone();
                async move { stops_within(&l, 8, 300).await }
            }),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(l.set_cancelled(vec![7]), vec![7]);
        assert!(a.await.unwrap(), "the cancelled job must stop");
        assert!(!b.await.unwrap(), "another job of the queue runs on");
        assert!(l.is_cancelled(7) && !l.is_cancelled(8));
        // The same read again is nothing new; a job started after the
        // cancel stops at once.
        assert!(l.set_cancelled(vec![7]).is_empty());
        assert!(stops_within(&l, 7, 100).await);
        // Requests expire: the set follows the read.
        l.set_cancelled(vec![]);
        assert!(!l.is_cancelled(7));
    }

    #[tokio::test]
    async fn losing_the_queue_stops_every_job() {
        let l = Arc::new(Lifeline::default());
        let waiting: Vec<_> = (0..3)
            .map(|slot| {
                let l = l.clone();
                tokio::spawn(async move { stops_within(&l, slot, 2000).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        l.lose();
        for w in waiting {
            assert!(w.await.unwrap());
        }
        assert!(l.is_lost() && !l.is_cancelled(0));
    }
}
