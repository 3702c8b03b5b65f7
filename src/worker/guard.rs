//! What stands around a tool call, in this order: the result cache (a hit
//! answers without calling), then the rate limit (over it, the job is parked
//! until a slot frees). The order matters: a hit, or a job waiting for
//! another worker's identical call, must not spend a rate-limit slot.
//!
//! Tools know nothing of this; the executor calls [`before_call`] and, after
//! the call, settles the returned [`Fill`].

use std::time::Duration;

use serde_json::Value;

use super::attempt::Attempt;
use super::cache::{self, Fill, Lookup};
use super::rate_limit::{self, Admit};
use crate::tools::Tool;

/// Headroom of the cache fill lock over the attempt's timeout, so the lock
/// outlives the call it guards (rate-limit check included).
const LOCK_MARGIN: Duration = Duration::from_secs(1);

pub enum Before {
    /// Served from the cache.
    Cached(Value),
    /// Call the tool, then settle the fill.
    Call(Fill),
    /// Parked by the rate limit: nothing more to do here.
    Parked,
    /// Cancelled while waiting: put the job back.
    Cancelled,
    /// The tool neither caches nor is rate limited (the attempt's shortcut).
    Unguarded,
}

/// Runs the cache lookup and the rate limit for one attempt.
pub async fn before_call(attempt: &Attempt, tool: &dyn Tool, timeout: Duration) -> Before {
    let ctx = &attempt.ctx;
    let lookup = cache::lookup(
        ctx,
        tool,
        &attempt.job.args,
        timeout + LOCK_MARGIN,
        &attempt.cancel,
    );
    let fill = match lookup.await {
        None => return Before::Cancelled,
        Some(Lookup::Hit(output)) => return Before::Cached(output),
        Some(Lookup::Miss(fill)) => fill,
    };
    let admit = rate_limit::admit(attempt).await;
    if admit == Admit::Go {
        return Before::Call(fill);
    }
    // Let a waiting identical job take the lock (it may find a slot).
    fill.finish(ctx, None).await;
    match admit {
        Admit::Parked => Before::Parked,
        _ => Before::Cancelled,
    }
}
