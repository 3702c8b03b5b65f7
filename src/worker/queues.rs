//! Which queues a worker serves and in what order it asks them for jobs:
//! strict priority by default, weighted random when any queue has a weight
//! (`--queue high=5 --queue default=1`), so low-priority work is not starved.
//!
//! A sharded queue is served as one lane per shard it serves, each with its
//! own keys (so recovery, delays, deaths, cancels and the heartbeat's fence
//! are per shard, as for any queue). Priority is between queues: a queue's
//! lanes come together in its place, starting one shard further each round
//! (from a random shard), so no shard is always asked first.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::queue::{QueueKeys, Shards};
use crate::spec::QueueSpec;

/// The lanes (queue shards) of one worker with their keys, and how to
/// order them.
#[derive(Debug)]
pub struct QueueSet {
    /// One per lane; a lane's index is what the fetcher, acker and
    /// heartbeat call `qi`.
    pub keys: Vec<QueueKeys>,
    /// Each queue's lanes, in the queues' order.
    groups: Vec<Range<usize>>,
    /// Each queue's layout when the set was made: a change of `serve`
    /// makes the worker rebuild it.
    pub layouts: Vec<Shards>,
    weights: Option<Vec<u32>>,
    /// Rotates the first lane asked within each queue.
    turn: AtomicUsize,
}

impl QueueSet {
    /// One lane per queue (every queue unsharded).
    pub fn new(specs: &[QueueSpec]) -> Self {
        Self::sharded(specs, &vec![Shards::one(); specs.len()])
    }

    /// One lane per served shard of each queue (`layouts` in `specs`' order).
    pub fn sharded(specs: &[QueueSpec], layouts: &[Shards]) -> Self {
        let weighted = specs.iter().any(|s| s.weight.is_some());
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let layout = layouts.get(i).copied().unwrap_or_default();
            let start = keys.len();
            keys.extend(layout.served(&spec.name));
            groups.push(start..keys.len());
        }
        QueueSet {
            keys,
            groups,
            layouts: (0..specs.len())
                .map(|i| layouts.get(i).copied().unwrap_or_default())
                .collect(),
            weights: weighted.then(|| specs.iter().map(|s| s.weight.unwrap_or(1)).collect()),
            turn: AtomicUsize::new(rand::random::<u16>() as usize),
        }
    }

    /// Each queue's lanes (their indexes into `keys`; shard 0 first), in
    /// the configured order.
    pub fn groups(&self) -> &[Range<usize>] {
        &self.groups
    }

    /// The queues' names, each once, in the configured order.
    pub fn names(&self) -> Vec<&str> {
        self.groups
            .iter()
            .map(|g| self.keys[g.start].name.as_str())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Lane indexes in the order to try them this round: the queues by
    /// priority (or weight), each queue's lanes together from a rotating
    /// first shard.
    pub fn order(&self) -> Vec<usize> {
        let queues = match &self.weights {
            None => (0..self.groups.len()).collect(),
            Some(w) => weighted_order(w, rand::random::<f64>),
        };
        if self.groups.len() == self.keys.len() {
            return queues;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.keys.len());
        for q in queues {
            let g = &self.groups[q];
            let n = g.len().max(1);
            out.extend((0..g.len()).map(|i| g.start + (turn + i) % n));
        }
        out
    }
}

/// Weighted sampling without replacement: a queue with weight 5 comes first
/// five times as often as one with weight 1.
pub fn weighted_order(weights: &[u32], mut uniform: impl FnMut() -> f64) -> Vec<usize> {
    let mut left: Vec<usize> = (0..weights.len()).collect();
    let mut out = Vec::with_capacity(weights.len());
    while !left.is_empty() {
        let total: u64 = left.iter().map(|&i| weights[i] as u64).sum();
        let mut pick = (uniform().clamp(0.0, 0.999_999) * total as f64) as u64;
        let mut chosen = left.len() - 1;
        for (pos, &i) in left.iter().enumerate() {
            if pick < weights[i] as u64 {
                chosen = pos;
                break;
            }
            pick -= weights[i] as u64;
        }
        out.push(left.remove(chosen));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_order_keeps_priority() {
        let set = QueueSet::new(&[
            QueueSpec::parse("a").unwrap(),
            QueueSpec::parse("b").unwrap(),
        ]);
        assert_eq!(set.order(), vec![0, 1]);
    }

    #[test]
    fn a_sharded_queue_s_lanes_keep_its_place_and_rotate() {
        let specs = [
            QueueSpec::parse("a").unwrap(),
            QueueSpec::parse("b").unwrap(),
        ];
        let three = Shards {
            count: 3,
            serve: 3,
            max: 3,
        };
        let set = QueueSet::sharded(&specs, &[three, Shards::one()]);
        assert_eq!(set.len(), 4);
        assert_eq!(set.names(), ["a", "b"]);
        assert_eq!(set.keys[2].pending, "toolq:{a#2}:pending");
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..3 {
            let order = set.order();
            let mut a: Vec<usize> = order[..3].to_vec();
            firsts.insert(a[0]);
            a.sort();
            assert_eq!(a, [0, 1, 2], "{order:?}");
            assert_eq!(order[3], 3, "b after every shard of a: {order:?}");
        }
        assert_eq!(firsts.len(), 3, "each shard of a comes first in turn");
    }

    #[test]
    fn weighted_order_follows_weights() {
        let mut first = [0u32; 2];
        for _ in 0..6000 {
            first[weighted_order(&[5, 1], rand::random::<f64>)[0]] += 1;
        }
        let ratio = first[0] as f64 / first[1] as f64;
        assert!((3.5..7.0).contains(&ratio), "ratio {ratio}");
        assert_eq!(weighted_order(&[1, 1, 1], || 0.0), vec![0, 1, 2]);
        let mut order = weighted_order(&[2, 3, 4], || 0.99);
        order.sort();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
