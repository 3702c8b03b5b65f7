//! The scheduler: promotes due jobs (retries and scheduled jobs) from
//! `delayed` to `pending`. Every worker runs one; the promote script is
//! atomic, so racing workers never move a job twice.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::context::Ctx;
use super::fetcher::sleep_or_stop;
use super::outage::retry_delay;

/// Most jobs promoted per call: keeps each script call short.
const BATCH: usize = 1000;
/// Longest sleep between checks, so newly delayed jobs are seen promptly.
const MAX_SLEEP: Duration = Duration::from_millis(500);
const MIN_SLEEP: Duration = Duration::from_millis(5);

pub struct Scheduler {
    pub ctx: Arc<Ctx>,
}

impl Scheduler {
    pub async fn run(self, stop: CancellationToken) {
        let mut failures = 0;
        while !stop.is_cancelled() {
            let mut sleep = MAX_SLEEP;
            for keys in &self.ctx.queues.keys {
                match self.ctx.broker.promote(keys, BATCH).await {
                    Ok((moved, next)) => {
                        failures = 0;
                        if moved as usize >= BATCH {
                            sleep = Duration::ZERO;
                        } else if let Some(next) = next {
                            sleep = sleep.min(next.max(MIN_SLEEP));
                        }
                    }
                    Err(e) => {
                        self.ctx.outage.failed("promote", &e);
                        sleep = retry_delay(failures);
                        failures += 1;
                    }
                }
            }
            if !sleep.is_zero() {
                sleep_or_stop(sleep, &stop).await;
            }
        }
    }
}
