//! What became of one attempt, ready to be written by the acker.

use crate::queue::{AckItem, BuryItem, RetryItem};

/// One job's outcome for queue number `queue` of this worker.
#[derive(Debug)]
pub enum Outcome {
    /// Finished: result written, job removed from active.
    Ack { queue: usize, item: AckItem },
    /// Failed, will run again after a delay.
    Retry { queue: usize, item: RetryItem },
    /// Given up on: moved to dead.
    Bury { queue: usize, item: BuryItem },
}
