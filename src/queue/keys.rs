//! Every Redis key toolq touches is built here and nowhere else.
//!
//! Keys of one queue share the hash tag `{Q}`, so the multi-key scripts stay in
//! one slot on Redis Cluster.

/// Prefix of every key.
pub const PREFIX: &str = "toolq";

/// The keys of one queue, formatted once: the hot path only appends ids.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub name: String,
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
    /// The prefix of every key of the queue, `toolq:{Q}:`.
    pub tag: String,
}

impl QueueKeys {
    pub fn new(queue: &str) -> Self {
        let tag = format!("{PREFIX}:{{{queue}}}:");
        Self {
            name: queue.to_owned(),
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
}

/// hash: every schedule's name → its queue, for `toolq schedule list` and
/// to find a schedule by name.
pub const SCHEDULES: &str = "toolq:schedules";

/// set: the name of every queue producers enqueued on or workers served:
/// how `stats`, the console and the gateway find queues without walking the
/// keyspace.
pub const QUEUES: &str = "toolq:queues";

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
    let q = queue_of(key)?;
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
