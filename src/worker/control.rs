//! What operators asked of this worker, as its heartbeat last read it from
//! Redis: which of its queues are paused (the fetcher and the waiters skip
//! them) and which of its running jobs were cancelled (their calls are
//! stopped and the jobs settled as `cancelled`). Read once a second, so a
//! pause or a cancel takes effect within a heartbeat interval, at no Redis
//! cost per job. Also each queue's current [`Lifeline`], through which both
//! a cancel and a lost queue reach the running jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::lifeline::Lifeline;
use crate::health::metrics::QUEUE_PAUSED;
use crate::queue::{QueueError, QueueFlags};

pub struct Control {
    worker_id: String,
    names: Vec<String>,
    paused: Vec<AtomicBool>,
    /// Per queue: the lifeline of the jobs fetched from now on.
    lifelines: Vec<Mutex<Arc<Lifeline>>>,
    /// Whether a failed read of the flags was logged (once per failure run).
    warned: AtomicBool,
}

impl Control {
    pub fn new(worker_id: &str, names: &[String]) -> Self {
        Control {
            worker_id: worker_id.to_owned(),
            names: names.to_vec(),
            paused: names.iter().map(|_| AtomicBool::new(false)).collect(),
            lifelines: names.iter().map(|_| Mutex::default()).collect(),
            warned: AtomicBool::new(false),
        }
    }

    pub fn is_paused(&self, queue: usize) -> bool {
        self.paused
            .get(queue)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// The lifeline a job fetched from queue `qi` from now on must watch.
    pub fn lifeline(&self, qi: usize) -> Arc<Lifeline> {
        self.lifelines[qi]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this worker holds jobs of lane `qi` (fetched, running or
    /// being settled): each such job keeps a reference to the lane's
    /// lifeline, besides this one.
    pub fn holds_jobs(&self, qi: usize) -> bool {
        self.lifelines
            .get(qi)
            .is_some_and(|l| Arc::strong_count(&l.lock().unwrap_or_else(|p| p.into_inner())) > 1)
    }

    /// Stops the running jobs of queue `qi`: they were recovered by another
    /// worker. Jobs fetched afterwards get a new lifeline.
    pub fn lose_jobs(&self, qi: usize) {
        let mut l = self.lifelines[qi].lock().unwrap_or_else(|p| p.into_inner());
        l.lose();
        *l = Arc::default();
    }

    /// Takes the heartbeat's read of the flags. A failed read changes
    /// nothing (pauses and cancels wait for the next one) and is logged once:
    /// it must not fail the heartbeat, e.g. under a Redis user without rights
    /// to these keys.
    pub fn read(&self, flags: Result<Vec<QueueFlags>, QueueError>) {
        match flags {
            Ok(flags) => {
                self.warned.store(false, Ordering::Relaxed);
                self.apply(flags);
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "could not read the queues' pause and cancel flags; pausing and cancelling running jobs wait until it works");
                }
            }
        }
    }

    /// Applies what the heartbeat read: per queue, paused or not, and the
    /// cancelled running jobs (most run on other workers: ignored).
    pub fn apply(&self, flags: Vec<QueueFlags>) {
        for (qi, flags) in flags.into_iter().enumerate() {
            let Some(p) = self.paused.get(qi) else { break };
            let queue = &self.names[qi];
            if p.swap(flags.paused, Ordering::Relaxed) != flags.paused {
                match flags.paused {
                    true => tracing::info!(%queue, "queue paused: taking no new jobs from it"),
                    false => tracing::info!(%queue, "queue resumed"),
                }
            }
            metrics::gauge!(QUEUE_PAUSED, "queue" => queue.clone()).set(if flags.paused {
                1.0
            } else {
                0.0
            });
            let (slots, ids): (Vec<u64>, Vec<String>) = flags
                .cancels
                .into_iter()
                .filter(|c| c.worker == self.worker_id)
                .map(|c| (c.slot, c.id))
                .unzip();
            let new = self.lifeline(qi).set_cancelled(slots.clone());
            for (slot, id) in slots.iter().zip(&ids) {
                if new.contains(slot) {
                    tracing::info!(job_id = %id, %queue, "job cancelled by an operator: stopping it");
                }
            }
        }
    }
}
