//! What stands around a tool call, in this order: the result cache (a hit
//! answers without calling), then the rate limit (over it, the job is parked
//! until a slot frees). The order matters: a hit, or a job waiting for
//! another worker's identical call, must not spend a rate-limit slot.
//!
//! Tools know nothing of this; the executor calls [`before_call`] and, after
//! the call, settles the returned [`Fill`].

use std::time::Duration;

use super::executor::Cancel;
use serde_json::Value;

use super::cache::{self, Fill, Lookup};
use super::context::Ctx;
use super::rate_limit::{self, Admit};
use crate::job::Job;
use crate::tools::Tool;

/// Headroom of the cache fill lock over the attempt's timeout, so the lock
/// outlives the call it guards (rate-limit check included).
const LOCK_MARGIN: Duration = Duration::from_secs(1);

pub enum Before {
    /// Served from the cache.
    Cached(Value),
    /// Call the tool, then settle the fill.
    Call(Fill),
    /// Parked by the rate limit, or cancelled: nothing to write.
    Stop,
    /// The tool neither caches nor is rate limited (the executor's shortcut).
    Unguarded,
}

/// Runs the cache lookup and the rate limit for one attempt.
#[allow(clippy::too_many_arguments)]
pub async fn before_call(
    ctx: &Ctx,
    qi: usize,
    seq: u64,
    payload: &[u8],
    job: &Job,
    id: &str,
    tool: &dyn Tool,
    timeout: Duration,
    cancel: Cancel<'_>,
) -> Before {
    let fill = match cache::lookup(ctx, tool, &job.args, timeout + LOCK_MARGIN, cancel).await {
        None => return Before::Stop,
        Some(Lookup::Hit(output)) => return Before::Cached(output),
        Some(Lookup::Miss(fill)) => fill,
    };
    match rate_limit::admit(ctx, qi, seq, payload, job, id, cancel).await {
        Admit::Go => Before::Call(fill),
        Admit::Parked | Admit::Cancelled => {
            // Let a waiting identical job take the lock (it may find a slot).
            fill.finish(ctx, None).await;
            Before::Stop
        }
    }
}
