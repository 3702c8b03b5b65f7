//! A payload over `max_payload_bytes` reaches the worker only as the fetch
//! script's stand-in (`queue::Oversized`): its size, SHA-1, head and tail.
//! It is buried from that through the one settlement path, unread and never
//! run: the dead entry keeps the head, size and digest, and when the head or
//! tail names the job's id its dead result is written and a waiting
//! producer told.

use serde_json::Value;

use super::context::Ctx;
use super::executor::{Taken, INVALID_TOOL_LABEL};
use super::outcome::{dead_result, error, Outcome, Settle};
use crate::job::{self, DeadJob, Job, JobError, Truncated};
use crate::queue::{BuryItem, Oversized};

/// The burial of the stand-in `o`, held in `taken`'s slot.
pub(super) fn bury_oversized(ctx: &Ctx, taken: &Taken, o: &Oversized<'_>) -> Outcome {
    let head = job::read_head(o.head).or(job::read_tail(o.tail));
    let too_large = JobError::TooLarge {
        size: usize::try_from(o.bytes).unwrap_or(usize::MAX),
        limit: ctx.limits.max_bytes,
    };
    let info = error(too_large.kind(), too_large.to_string());
    tracing::warn!(queue = %ctx.queues.keys[taken.queue].name, job_id = ?head.id,
        bytes = o.bytes, "burying an oversized payload unread");
    let dead = DeadJob::Truncated(Truncated {
        head: o.head,
        bytes: o.bytes,
        sha1: o.sha1.to_owned(),
        id: head.id.clone(),
    });
    let prefix = job::dead_entry_prefix(&dead, &info, &ctx.worker_id, taken.slot);
    // Without an id there is no result key to write nor a name to notify.
    let (result, ttl, batch) = match &head.id {
        Some(id) => {
            let mut stub = Job::new(head.tool.clone().unwrap_or_default(), Value::Null);
            stub.attempt = head.attempt.unwrap_or(0);
            stub.recoveries = head.recoveries.unwrap_or(0);
            stub.enqueued_at = head.enqueued_at;
            let ttl = head
                .result_ttl_s
                .unwrap_or(ctx.config.result_ttl_s)
                .min(job::MAX_RESULT_TTL_S);
            (dead_result(ctx, &stub, id, &info), ttl, head.batch.clone())
        }
        None => (String::new(), 0, None),
    };
    let settle = Settle::Bury {
        item: BuryItem {
            seq: taken.slot,
            id: head.id.clone(),
            dead_entry_prefix: prefix,
            result_ttl_s: ttl,
            result,
            batch,
            unique_key: head.id.as_ref().and(head.unique_key.clone()),
            cancelled: false,
            // Its templates were never read: it is not a job that ran.
            follow_up: None,
        },
        tm: ctx.metrics.tool(taken.queue, INVALID_TOOL_LABEL),
    };
    Outcome {
        queue: taken.queue,
        settle,
    }
}
