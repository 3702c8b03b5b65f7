//! What operators asked of this worker, as its heartbeat last read it from
//! Redis: which of its queues are paused (the fetcher and the waiters skip
//! them) and which running jobs were cancelled (their calls are stopped and
//! the jobs settled as `cancelled`). Read once a second, so a pause or a
//! cancel takes effect within a heartbeat interval, at no Redis cost per job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::health::metrics::QUEUE_PAUSED;

pub struct Control {
    names: Vec<String>,
    paused: Vec<AtomicBool>,
    /// Per queue: the running jobs by id, with the token that stops each.
    running: Vec<Arc<Mutex<Running>>>,
    /// Whether a failed read of the flags was logged (once per failure run).
    warned: AtomicBool,
}

type Running = HashMap<String, CancellationToken>;

/// Keeps a job registered as running while it lives.
pub struct RunningJob {
    map: Option<Arc<Mutex<Running>>>,
    id: String,
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            if let Ok(mut m) = map.lock() {
                m.remove(&self.id);
            }
        }
    }
}

impl Control {
    pub fn new(names: &[String]) -> Self {
        Control {
            names: names.to_vec(),
            paused: names.iter().map(|_| AtomicBool::new(false)).collect(),
            running: names
                .iter()
                .map(|_| Arc::new(Mutex::new(HashMap::new())))
                .collect(),
            warned: AtomicBool::new(false),
        }
    }

    pub fn is_paused(&self, queue: usize) -> bool {
        self.paused
            .get(queue)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// Registers job `id` of queue `queue` as running here: an operator's
    /// cancel fires `token`.
    pub fn running(&self, queue: usize, id: &str, token: &CancellationToken) -> RunningJob {
        let map = self.running.get(queue).cloned();
        if let Some(map) = &map {
            if let Ok(mut m) = map.lock() {
                m.insert(id.to_owned(), token.clone());
            }
        }
        RunningJob {
            map,
            id: id.to_owned(),
        }
    }

    /// Takes the heartbeat's read of the flags. A failed read changes
    /// nothing (pauses and cancels wait for the next one) and is logged once:
    /// it must not fail the heartbeat, e.g. under a Redis user without rights
    /// to these keys.
    pub fn read(&self, flags: Result<Vec<(bool, Vec<String>)>, crate::queue::QueueError>) {
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
    /// ids of cancelled running jobs (most run elsewhere: ignored).
    pub fn apply(&self, flags: Vec<(bool, Vec<String>)>) {
        for (qi, (paused, cancelled)) in flags.into_iter().enumerate() {
            let Some(p) = self.paused.get(qi) else { break };
            if p.swap(paused, Ordering::Relaxed) != paused {
                let queue = &self.names[qi];
                match paused {
                    true => tracing::info!(%queue, "queue paused: taking no new jobs from it"),
                    false => tracing::info!(%queue, "queue resumed"),
                }
            }
            metrics::gauge!(QUEUE_PAUSED, "queue" => self.names[qi].clone()).set(if paused {
                1.0
            } else {
                0.0
            });
            if cancelled.is_empty() {
                continue;
            }
            if let Ok(m) = self.running[qi].lock() {
                for id in cancelled {
                    if let Some(token) = m.get(&id) {
                        if !token.is_cancelled() {
                            tracing::info!(job_id = %id, "job cancelled by an operator: stopping it");
                            token.cancel();
                        }
                    }
                }
            }
        }
    }
}
