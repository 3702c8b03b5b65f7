//! The tool result cache, seen from the worker: a tool that declares a TTL
//! has its successful outputs kept in Redis under a digest of its normalised
//! arguments, and an identical job is answered from there without running
//! the tool.
//!
//! Stampedes: when identical jobs miss at once (on any number of workers),
//! one takes a short fill lock and calls the tool; the others poll for its
//! entry, for at most the lock's lifetime, and compute themselves only if it
//! never comes (the holder failed or died). The cache is an optimisation:
//! when Redis errs here the job simply runs uncached.

use std::time::{Duration, Instant};

use super::executor::Cancel;
use metrics::counter;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::context::Ctx;
use crate::health::metrics::{CACHE_HITS, CACHE_MISSES};
use crate::queue::CacheClaim;
use crate::tools::Tool;

/// First wait between polls for another worker's entry; doubles up to
/// [`POLL_MAX`], so a fast tool is seen quickly and a slow one costs little.
const POLL_START: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(200);

/// What the cache had for a job.
pub enum Lookup {
    /// The output to return without running the tool.
    Hit(Value),
    /// Run the tool, then settle the [`Fill`].
    Miss(Fill),
}

/// What a miss leaves to do after the call: store a successful output and
/// release the fill lock if this job holds it. Inert for uncached tools.
#[must_use = "a claimed fill lock must be released"]
pub struct Fill {
    entry: Option<Entry>,
}

struct Entry {
    tool: String,
    digest: String,
    ttl: Duration,
    /// The fill lock's token, when this job holds it.
    token: Option<String>,
}

impl Fill {
    fn none() -> Self {
        Fill { entry: None }
    }

    /// Stores `output` (the call succeeded) and releases the fill lock, so
    /// waiting jobs find the entry, or after a failure take the lock and try
    /// themselves.
    pub async fn finish(self, ctx: &Ctx, output: Option<&Value>) {
        let Some(entry) = self.entry else { return };
        if let Some(output) = output {
            let text = output.to_string();
            if let Err(e) = ctx
                .broker
                .cache_fill(&entry.tool, &entry.digest, &text, entry.ttl)
                .await
            {
                ctx.outage.failed("cache", &e);
            }
        }
        if let Some(token) = &entry.token {
            if let Err(e) = ctx
                .broker
                .cache_release(&entry.tool, &entry.digest, token)
                .await
            {
                // The lock expires on its own; waiters only wait longer.
                ctx.outage.failed("cache", &e);
            }
        }
    }
}

/// Looks `args` up for `tool`. `lock_ttl` bounds both how long this job may
/// hold the fill lock and how long it waits for another's. `None` when
/// cancelled while waiting.
pub async fn lookup(
    ctx: &Ctx,
    tool: &dyn Tool,
    args: &Value,
    lock_ttl: Duration,
    cancel: &Cancel,
) -> Option<Lookup> {
    let Some(ttl) = tool.cache_ttl().filter(|t| !t.is_zero()) else {
        return Some(Lookup::Miss(Fill::none()));
    };
    let name = tool.name();
    let mut entry = Entry {
        tool: name.to_owned(),
        digest: digest(args),
        ttl,
        token: None,
    };
    let found = match ctx.broker.cache_get(name, &entry.digest).await {
        Ok(found) => found,
        Err(e) => {
            ctx.outage.failed("cache", &e);
            return Some(miss(name, entry));
        }
    };
    if let Some(output) = found.as_deref().and_then(|text| parse(name, text)) {
        return Some(hit(name, output));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let deadline = Instant::now() + lock_ttl;
    let mut poll = POLL_START;
    loop {
        match ctx
            .broker
            .cache_claim(name, &entry.digest, &token, lock_ttl)
            .await
        {
            Ok(CacheClaim::Hit(text)) => {
                if let Some(output) = parse(name, &text) {
                    return Some(hit(name, output));
                }
                return Some(miss(name, entry));
            }
            Ok(CacheClaim::Claimed) => {
                entry.token = Some(token);
                return Some(miss(name, entry));
            }
            Ok(CacheClaim::Busy) if Instant::now() < deadline => {}
            Ok(CacheClaim::Busy) => {
                tracing::debug!(tool = name, "cache fill lock outlived its wait; computing");
                return Some(miss(name, entry));
            }
            Err(e) => {
                ctx.outage.failed("cache", &e);
                return Some(miss(name, entry));
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(poll) => {}
        }
        poll = (poll * 2).min(POLL_MAX);
    }
}

fn hit(tool: &str, output: Value) -> Lookup {
    counter!(CACHE_HITS, "tool" => tool.to_owned()).increment(1);
    Lookup::Hit(output)
}

fn miss(tool: &str, entry: Entry) -> Lookup {
    counter!(CACHE_MISSES, "tool" => tool.to_owned()).increment(1);
    Lookup::Miss(Fill { entry: Some(entry) })
}

/// An entry that is not JSON (written by something else) counts as a miss
/// and is overwritten by the fill, rather than failing the job.
fn parse(tool: &str, text: &str) -> Option<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::warn!(tool, "ignoring a cache entry that is not JSON");
            None
        }
    }
}

/// SHA-256 (hex) of the arguments serialised compactly with object keys
/// sorted at every level, so `{"a":1,"b":2}` and `{"b":2,"a":1}` share an
/// entry whatever order a producer wrote them in.
pub fn digest(args: &Value) -> String {
    let mut text = String::new();
    canonical(args, &mut text);
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut fields: Vec<(&String, &Value)> = map.iter().collect();
            fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn digest_ignores_key_order_at_every_level() {
        let a = json!({"city": "Oslo", "opts": {"units": "metric", "lang": "no"}, "l": [{"y": 1, "x": 2}]});
        let b = json!({"l": [{"x": 2, "y": 1}], "opts": {"lang": "no", "units": "metric"}, "city": "Oslo"});
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(digest(&a).len(), 64);
        assert!(digest(&a).bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn digest_tells_different_arguments_apart() {
        let base = digest(&json!({"city": "Oslo"}));
        assert_ne!(base, digest(&json!({"city": "oslo"})));
        assert_ne!(base, digest(&json!({"city": "Oslo", "units": "metric"})));
        assert_ne!(digest(&json!({"a": [1, 2]})), digest(&json!({"a": [2, 1]})));
        assert_ne!(digest(&json!({"a": "1"})), digest(&json!({"a": 1})));
        // Serialisation is compact and escapes keys: no ambiguity via quotes.
        let mut text = String::new();
        canonical(&json!({"b": {"k\"": [1, "x"]}, "a": null}), &mut text);
        assert_eq!(text, r#"{"a":null,"b":{"k\"":[1,"x"]}}"#);
    }

    #[test]
    fn digest_is_stable_across_releases() {
        // Changing this would orphan every entry in a running deployment;
        // it is `printf %s '{"city":"London"}' | sha256sum`.
        assert_eq!(
            digest(&json!({"city": "London"})),
            "2f3329991a3c65d4a4aa131185982f5cfa0d67aad1b45050c754d1fb38b6349e"
        );
    }
}
