//! Waiting for many jobs' results by id, on one Redis or a cluster, a
//! sharded queue's ids each looked up in its own shard's keys.

use std::time::{Duration, Instant};

use toolq::producer::Submitted;
use toolq::queue::{Broker, QueueKeys};

/// Jobs sent to one shard: its keys and their ids.
pub type Sent = Vec<(QueueKeys, Vec<String>)>;

/// The ids of `submitted`, grouped by the shard each went to.
pub fn by_shard(submitted: &Submitted) -> Sent {
    let mut out: Sent = Vec::new();
    for (id, &k) in submitted.ids.iter().zip(&submitted.shards) {
        match out.iter_mut().find(|(keys, _)| keys.shard == k) {
            Some((_, ids)) => ids.push(id.clone()),
            None => out.push((QueueKeys::shard(&submitted.queue, k), vec![id.clone()])),
        }
    }
    out
}

/// Ids of `ids` whose result is not stored in `keys`' shard yet.
pub async fn missing(broker: &Broker, keys: &QueueKeys, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.exists(keys.result(id));
        }
        let found: Vec<bool> = broker.query_pipe("test", &pipe).await.expect("EXISTS");
        out.extend(
            chunk
                .iter()
                .zip(found)
                .filter(|(_, f)| !f)
                .map(|(id, _)| id.clone()),
        );
    }
    out
}

/// Waits until every job of `sent` has its result; the time it took and
/// how many were still missing at the deadline. Only the ids still missing
/// are asked for again.
pub async fn drain(broker: &Broker, sent: &Sent, within: Duration) -> (Duration, usize) {
    let start = Instant::now();
    let mut left: Sent = sent.clone();
    loop {
        let mut still = Vec::new();
        for (keys, ids) in &left {
            still.push((keys.clone(), missing(broker, keys, ids).await));
        }
        left = still;
        let n: usize = left.iter().map(|(_, ids)| ids.len()).sum();
        if n == 0 || start.elapsed() > within {
            return (start.elapsed(), n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`Sent`] of unsharded queues: each queue's ids under its shard 0.
pub fn in_queues(sent: &[(String, Vec<String>)]) -> Sent {
    sent.iter()
        .map(|(q, ids)| (QueueKeys::new(q), ids.clone()))
        .collect()
}
