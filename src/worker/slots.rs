//! Run slots for prefetched jobs, handed out in the order the jobs were
//! fetched. A fetched job's task waits in line for a slot; tasks waiting on
//! a semaphore of their own would be served in the order they first ran,
//! which the runtime does not keep (it runs the task spawned last first),
//! and jobs are FIFO within a shard.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// A run slot, held while the job runs.
pub type Slot = OwnedSemaphorePermit;

pub struct RunSlots {
    slots: Arc<Semaphore>,
    line: Mutex<VecDeque<oneshot::Sender<Slot>>>,
    joined: Notify,
}

impl RunSlots {
    pub fn new(concurrency: usize) -> Arc<Self> {
        Arc::new(RunSlots {
            slots: Arc::new(Semaphore::new(concurrency)),
            line: Mutex::new(VecDeque::new()),
            joined: Notify::new(),
        })
    }

    /// Joins the line; called in fetch order. A job that leaves it (stop,
    /// cancel) drops the receiver, and its turn passes to the next.
    pub fn join(&self) -> oneshot::Receiver<Slot> {
        let (tx, rx) = oneshot::channel();
        self.line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(tx);
        self.joined.notify_one();
        rx
    }

    fn next_in_line(&self) -> Option<oneshot::Sender<Slot>> {
        self.line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    /// Hands each free slot to the first job in line still waiting, until
    /// `stop` (fetching stopped: a job still in line never starts).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let mut slot = tokio::select! {
                _ = stop.cancelled() => return,
                s = self.slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            loop {
                match self.next_in_line() {
                    Some(tx) => match tx.send(slot) {
                        Ok(()) => break,
                        // That job left the line: the next one's turn.
                        Err(back) => slot = back,
                    },
                    None => tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = self.joined.notified() => {}
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Slots go in the order of `join`, whatever order the waiting tasks
    /// first run in, and a job that left the line gives its turn away.
    #[tokio::test]
    async fn slots_go_in_join_order_and_skip_those_who_left() {
        let slots = RunSlots::new(1);
        let stop = CancellationToken::new();
        let lines: Vec<_> = (0..4).map(|_| slots.join()).collect();
        tokio::spawn(slots.clone().run(stop.clone()));
        let mut lines = lines.into_iter();
        let first = lines.next().unwrap();
        let second = lines.next().unwrap();
        let third = lines.next().unwrap();
        let fourth = lines.next().unwrap();
        let s1 = first.await.expect("the first in line gets the slot");
        drop(second); // left the line
        let mut third = third;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut third)
                .await
                .is_err(),
            "one slot: the third waits while the first runs"
        );
        drop(s1);
        let s3 = third.await.expect("the third, the second having left");
        drop(s3);
        let _s4 = fourth.await.expect("then the fourth");
        stop.cancel();
    }
}
