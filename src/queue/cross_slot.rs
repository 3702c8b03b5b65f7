//! Follow-ups and callbacks bound for another queue on a Redis Cluster,
//! where that queue's keys live in another slot (often on another node), out
//! of reach of the script that settles the parent job.
//!
//! A follow-up to a queue of another slot is pushed by itself, just before
//! the script that settles its parent (which then carries no follow-up).
//! A crash between the two leaves the parent held: it is recovered and run
//! again, and pushes its follow-up again; so does a settling call that
//! failed (an outage) and is made again, and a parent that turns out no
//! longer ours (its new owner pushes it too). So the follow-up runs at
//! least once, never zero times: the delivery guarantee of every job. A follow-up to the parent's own
//! queue (any follow-up on a single Redis) still goes in with the
//! settlement, exactly once.
//!
//! A batch callback is counted by each settling script and pushed by the
//! last one: it must go to the batch's own queue on a cluster, and arming
//! one for another queue is refused.

use std::borrow::Cow;

use redis::cluster_routing::Slot;

use super::broker::{AckItem, Broker, BuryItem};
use super::keys::QueueKeys;
use super::{QueueError, Result};

impl Broker {
    /// `items`, with each follow-up bound for a queue of another slot
    /// pushed first and taken out.
    pub(super) async fn push_foreign_follow_ups<'a>(
        &self,
        keys: &QueueKeys,
        items: &'a [AckItem],
    ) -> Result<Cow<'a, [AckItem]>> {
        let foreign = |i: &AckItem| {
            i.follow_up
                .as_ref()
                .is_some_and(|f| self.elsewhere(keys, &f.queue))
        };
        if !items.iter().any(foreign) {
            return Ok(Cow::Borrowed(items));
        }
        let mut out = items.to_vec();
        for item in out.iter_mut().filter(|i| foreign(i)) {
            if let Some(f) = item.follow_up.take() {
                self.push_follow_up(&f.queue, &f.payload).await?;
            }
        }
        Ok(Cow::Owned(out))
    }

    /// The same for one burial.
    pub(super) async fn push_foreign_follow_up<'a>(
        &self,
        keys: &QueueKeys,
        item: &'a BuryItem,
    ) -> Result<Cow<'a, BuryItem>> {
        match &item.follow_up {
            Some(f) if self.elsewhere(keys, &f.queue) => {
                self.push_follow_up(&f.queue, &f.payload).await?;
                let mut item = item.clone();
                item.follow_up = None;
                Ok(Cow::Owned(item))
            }
            _ => Ok(Cow::Borrowed(item)),
        }
    }

    /// Refuses a batch callback bound for a queue of another slot.
    pub(super) fn check_callback_slot(&self, keys: &QueueKeys, to: &str) -> Result<()> {
        if !self.elsewhere(keys, to) {
            return Ok(());
        }
        Err(QueueError::Config(format!(
            "on a Redis Cluster a batch callback must go to the batch's own queue ({:?}), not {to:?}: \
             the queues live in different slots, which one script cannot reach (README \"Scaling past one Redis\")",
            keys.name
        )))
    }

    /// Whether `queue`'s keys are in another slot than `keys`' on a
    /// cluster (never on a single Redis).
    fn elsewhere(&self, keys: &QueueKeys, queue: &str) -> bool {
        self.target().is_cluster()
            && Slot::for_key(&keys.pending) != Slot::for_key(keys.follow_up_pending(queue))
    }

    async fn push_follow_up(&self, queue: &str, payload: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.lpush(QueueKeys::new(queue).pending, payload);
        let replies = self.pipe_durable("follow_up", &mut pipe).await?;
        match replies.into_iter().next() {
            Some(redis::Value::ServerError(e)) => Err(self.fail("follow_up", e.into())),
            _ => Ok(()),
        }
    }
}
