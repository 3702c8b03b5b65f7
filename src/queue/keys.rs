//! Every Redis key toolq touches is built here and nowhere else.
//!
//! Keys of one queue share the hash tag `{Q}`, so the multi-key scripts stay in
//! one slot on Redis Cluster. A sharded queue has one such set of keys per
//! shard: shard 0 keeps `{Q}` (so a queue's existing jobs, its schedules and
//! any client that pushes to `toolq:{Q}:pending` by hand need no change when
//! it is sharded), shard k > 0 uses `{Q#k}`. Queue names hold no `#`, so no
//! shard's tag is another queue's.

/// Prefix of every key.
pub const PREFIX: &str = "toolq";

/// The keys of one queue, formatted once: the hot path only appends ids.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub name: String,
    /// Which shard of the queue these keys are (0 for a queue never sharded).
    pub shard: u32,
    /// list: jobs waiting; producers LPUSH, workers take from the right.
    pub pending: String,
    /// sorted set: retries and scheduled jobs, score = due unix ms.
    pub delayed: String,
    /// sorted set: buried jobs, score = time of death.
    pub dead: String,
    /// sorted set: worker ids, score = last heartbeat (Redis clock, ms).
    pub workers: String,
    /// hash: running totals by outcome (`succeeded`, `retrying`, `dead`,
    /// `cancelled`).
    pub stats: String,
    /// string: present while the queue is paused (workers take no job).
    pub paused: String,
    /// sorted set: ids of running jobs an operator cancelled, score = when
    /// (Redis ms); workers read it with their heartbeat.
    pub cancel: String,
    /// hash: what the queue's workers share so that each does O(1) work
    /// whatever the fleet's size: whose turn a fleet-wide chore is
    /// (`<chore>` = `<until ms>:<worker>`) and the last gauge readings
    /// (`pending`, `active`, `delayed`, `dead`, `live`, `at`); expiring.
    pub fleet: String,
    /// The prefix of every key of the shard, `toolq:{Q}:` or `toolq:{Q#k}:`.
    pub tag: String,
}

impl QueueKeys {
    /// The keys of shard 0: a queue's only shard unless it is sharded.
    pub fn new(queue: &str) -> Self {
        Self::shard(queue, 0)
    }

    /// The keys of shard `k` of `queue`.
    pub fn shard(queue: &str, k: u32) -> Self {
        let tag = match k {
            0 => format!("{PREFIX}:{{{queue}}}:"),
            k => format!("{PREFIX}:{{{queue}#{k}}}:"),
        };
        Self {
            name: queue.to_owned(),
            shard: k,
            pending: format!("{tag}pending"),
            delayed: format!("{tag}delayed"),
            dead: format!("{tag}dead"),
            workers: format!("{tag}workers"),
            stats: format!("{tag}stats"),
            paused: format!("{tag}paused"),
            cancel: format!("{tag}cancel"),
            fleet: format!("{tag}fleet"),
            tag,
        }
    }

    /// hash: jobs this worker holds, one entry per fetched batch (layout in
    /// `scripts/held.lua`).
    pub fn active(&self, worker: &str) -> String {
        format!("{}active:{worker}", self.tag)
    }

    /// list: jobs moved by the blocking wait of workers of earlier
    /// versions; still recovered with their active hash (and counted by
    /// `stats`) so an upgrade strands nothing. Current workers wait without
    /// moving jobs.
    pub fn landing(&self, worker: &str) -> String {
        format!("{}active:{worker}:landing", self.tag)
    }

    /// string: a job's result JSON, with a TTL.
    pub fn result(&self, id: &str) -> String {
        let mut key = String::with_capacity(self.tag.len() + 7 + id.len());
        key.push_str(&self.tag);
        key.push_str("result:");
        key.push_str(id);
        key
    }

    /// string: a job's latest progress report (JSON), written while it
    /// runs and expiring after its attempt's timeout plus its result TTL.
    pub fn progress(&self, id: &str) -> String {
        let mut key = String::with_capacity(self.tag.len() + 9 + id.len());
        key.push_str(&self.tag);
        key.push_str("progress:");
        key.push_str(id);
        key
    }

    /// list: ids of a batch's finished jobs, pushed by the worker so that a
    /// waiting producer blocks on one key instead of polling results.
    pub fn batch(&self, batch: &str) -> String {
        format!("{}batch:{batch}", self.tag)
    }

    /// hash: a batch's callback job and its jobs' counts by outcome,
    /// until the callback fires (layout in `scripts/batch_callback.lua`).
    pub fn batch_callback(&self, batch: &str) -> String {
        format!("{}batch_callback:{batch}", self.tag)
    }

    /// string: marks a unique job as pending/running, with a TTL.
    pub fn unique(&self, unique_key: &str) -> String {
        format!("{}unique:{unique_key}", self.tag)
    }

    /// Pattern matching every `active` key of the queue (for `stats`).
    pub fn active_pattern(&self) -> String {
        format!("{}active:*", self.tag)
    }

    /// hash: one periodic schedule whose jobs go to this queue: its
    /// definition (`def`, JSON), `version`, `next` tick, `paused`, and the
    /// last tick enqueued (`last_tick`, `last_id`, `last_at`). In the
    /// queue's slot, so one script decides a tick and enqueues its job.
    pub fn schedule(&self, name: &str) -> String {
        format!("{}schedule:{name}", self.tag)
    }

    /// sorted set: the queue's schedules that are not paused, score = next
    /// tick (unix s): what the workers serving the queue poll.
    pub fn schedules_due(&self) -> String {
        format!("{}schedules", self.tag)
    }

    /// list: where a follow-up to `queue` of a job of this shard goes: this
    /// shard's own pending list when it is the same queue (so the settling
    /// script reaches it in its own slot, on a cluster too), else the other
    /// queue's shard 0.
    pub fn follow_up_pending(&self, queue: &str) -> String {
        match queue == self.name {
            true => self.pending.clone(),
            false => QueueKeys::new(queue).pending,
        }
    }

    /// hash: the queue's shard layout, in shard 0's slot (layout in
    /// `queue/shards.rs`): `count` (the shards producers write to), `serve`
    /// (the shards workers serve: more than `count` while shards retired by
    /// lowering it drain) and `max` (the most there ever were: where a job
    /// may still be found by id). Absent: one shard.
    pub fn shards(&self) -> String {
        format!("{PREFIX}:{{{}}}:shards", self.name)
    }
}

/// The shard a job with `unique_key` goes to among `count`: the same key
/// always lands on the same shard, so its unique mark is in that shard's
/// slot and uniqueness holds across shards. FNV-1a: stable across builds
/// and machines, unlike the standard library's hasher.
pub fn unique_shard(unique_key: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in unique_key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

/// hash: every schedule's name → its queue, for `toolq schedule list` and
/// to find a schedule by name.
pub const SCHEDULES: &str = "toolq:schedules";

/// set: the name of every queue producers enqueued on or workers served:
/// how `stats`, the console and the gateway find queues without walking the
/// keyspace.
pub const QUEUES: &str = "toolq:queues";

/// The pub/sub channel of wake-ups (see `queue::wake`); `wake.lua` names it
/// too, as a literal (a channel is not a key, scripts get no ARGV for it).
pub const WAKE_CHANNEL: &str = "toolq:wake";

/// string: a worker's registration (JSON), expiring unless refreshed.
pub fn worker_info(worker: &str) -> String {
    format!("{PREFIX}:worker:{worker}")
}

/// Not a key: the name every Redis connection of worker `worker` carries
/// (`CLIENT SETNAME`), so `CLIENT LIST` tells whether the worker still has
/// any. Worker ids hold no spaces (host, pid, random suffix), as names must.
pub fn connection_name(worker: &str) -> String {
    format!("{PREFIX}:w:{worker}")
}

/// The worker id a connection name of [`connection_name`] was made from.
pub fn worker_of_connection(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)?.strip_prefix(":w:")
}

/// sorted set: workers that published their tools, score = when (ms).
pub const CATALOG_WORKERS: &str = "toolq:catalog:workers";

/// string: the tools one worker serves (JSON), expiring unless its
/// heartbeat keeps it.
pub fn catalog_worker(worker: &str) -> String {
    format!("{PREFIX}:catalog:worker:{worker}")
}

/// string: a tool's cached output.
pub fn cache(tool: &str, digest: &str) -> String {
    format!("{PREFIX}:cache:{tool}:{digest}")
}

/// string: held (with a short TTL) by the one worker computing a missing
/// cache entry, so identical jobs elsewhere wait for it instead of calling
/// the tool too. A different Cluster slot from the entry: never used in the
/// same script.
pub fn cache_lock(tool: &str, digest: &str) -> String {
    format!("{PREFIX}:cache:{tool}:{digest}:lock")
}

/// sorted set: a tool's recent calls (sliding-window rate limit), score =
/// call time in Redis ms.
pub fn rate_limit(tool: &str) -> String {
    format!("{PREFIX}:ratelimit:{{{tool}}}")
}

/// Pattern for discovering queues from their pending lists.
pub const PENDING_PATTERN: &str = "toolq:{*}:pending";

/// `SCAN` patterns that discover queues: a queue exists while any of its
/// pending, delayed, dead or workers keys does. Built from [`QueueKeys`] with
/// `*` as the name, so they cannot drift from the real key names.
pub fn queue_patterns() -> [String; 4] {
    let k = QueueKeys::new("*");
    [k.pending, k.delayed, k.dead, k.workers]
}

/// The queue a key names, if it is one of the keys [`queue_patterns`]
/// matches exactly (a glob `*` can also match braces: this checks it
/// round-trips).
pub fn discovered_queue(key: &str) -> Option<&str> {
    // Shard k > 0 of a queue (`{Q#k}`): the queue is found by its shard 0.
    let q = queue_of(key).filter(|q| !q.contains('#'))?;
    let k = QueueKeys::new(q);
    [&k.pending, &k.delayed, &k.dead, &k.workers]
        .iter()
        .any(|candidate| candidate.as_str() == key)
        .then_some(q)
}

/// The queue name inside a key built by [`QueueKeys`], e.g. for `SCAN` results.
pub fn queue_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("toolq:{")?;
    let end = rest.find('}')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_queue_hash_tag() {
        let k = QueueKeys::new("emails");
        assert_eq!(k.pending, "toolq:{emails}:pending");
        assert_eq!(k.delayed, "toolq:{emails}:delayed");
        assert_eq!(k.dead, "toolq:{emails}:dead");
        assert_eq!(k.workers, "toolq:{emails}:workers");
        assert_eq!(k.active("w1"), "toolq:{emails}:active:w1");
        assert_eq!(k.landing("w1"), "toolq:{emails}:active:w1:landing");
        assert_eq!(k.result("abc"), "toolq:{emails}:result:abc");
        assert_eq!(k.progress("abc"), "toolq:{emails}:progress:abc");
        assert_eq!(k.batch("b"), "toolq:{emails}:batch:b");
        assert_eq!(k.batch_callback("b"), "toolq:{emails}:batch_callback:b");
        assert_eq!(k.unique("u"), "toolq:{emails}:unique:u");
        assert_eq!(k.schedule("s"), "toolq:{emails}:schedule:s");
        assert_eq!(k.schedules_due(), "toolq:{emails}:schedules");
        assert_eq!(k.shards(), "toolq:{emails}:shards");
        assert_eq!(k.shard, 0);
    }

    #[test]
    fn shard_keys_carry_their_own_tag_and_shard_0_keeps_the_queue_s() {
        assert_eq!(
            QueueKeys::shard("emails", 0).pending,
            "toolq:{emails}:pending"
        );
        let k = QueueKeys::shard("emails", 3);
        assert_eq!(k.pending, "toolq:{emails#3}:pending");
        assert_eq!(k.result("abc"), "toolq:{emails#3}:result:abc");
        assert_eq!(k.active("w1"), "toolq:{emails#3}:active:w1");
        assert_eq!(k.name, "emails");
        // The layout is one key of the queue, whatever the shard.
        assert_eq!(k.shards(), "toolq:{emails}:shards");
        assert_eq!(discovered_queue("toolq:{emails#3}:pending"), None);
        assert_eq!(k.follow_up_pending("emails"), "toolq:{emails#3}:pending");
        assert_eq!(k.follow_up_pending("other"), "toolq:{other}:pending");
        assert_eq!(discovered_queue("toolq:{emails}:pending"), Some("emails"));
    }

    #[test]
    fn a_unique_key_always_maps_to_the_same_shard() {
        assert_eq!(unique_shard("order-17", 8), unique_shard("order-17", 8));
        assert_eq!(unique_shard("anything", 1), 0);
        assert_eq!(unique_shard("anything", 0), 0);
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[unique_shard(&format!("k{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn global_keys() {
        assert_eq!(worker_info("w"), "toolq:worker:w");
        assert_eq!(cache("weather", "ab12"), "toolq:cache:weather:ab12");
        assert_eq!(
            cache_lock("weather", "ab12"),
            "toolq:cache:weather:ab12:lock"
        );
        assert_eq!(rate_limit("weather"), "toolq:ratelimit:{weather}");
    }

    #[test]
    fn discovery_patterns_match_only_queue_keys() {
        assert_eq!(queue_patterns()[0], "toolq:{*}:pending");
        assert_eq!(queue_patterns()[3], "toolq:{*}:workers");
        assert_eq!(discovered_queue("toolq:{q1}:dead"), Some("q1"));
        assert_eq!(discovered_queue("toolq:{a}:x:{b}:pending"), None);
        assert_eq!(discovered_queue("toolq:{a}:result:x"), None);
    }

    #[test]
    fn queue_name_is_recovered_from_a_key() {
        assert_eq!(queue_of("toolq:{a:b}:pending"), Some("a:b"));
        assert_eq!(queue_of("other:{x}:pending"), None);
    }
}
