//! Which queues a worker serves and in what order it asks them for jobs:
//! strict priority by default, weighted random when any queue has a weight
//! (`--queue high=5 --queue default=1`), so low-priority work is not starved.

use crate::queue::QueueKeys;
use crate::spec::QueueSpec;

/// The queues of one worker with their keys, and how to order them.
#[derive(Debug, Clone)]
pub struct QueueSet {
    pub keys: Vec<QueueKeys>,
    weights: Option<Vec<u32>>,
}

impl QueueSet {
    pub fn new(specs: &[QueueSpec]) -> Self {
        let weighted = specs.iter().any(|s| s.weight.is_some());
        QueueSet {
            keys: specs.iter().map(|s| QueueKeys::new(&s.name)).collect(),
            weights: weighted.then(|| specs.iter().map(|s| s.weight.unwrap_or(1)).collect()),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Queue indexes in the order to try them this round.
    pub fn order(&self) -> Vec<usize> {
        match &self.weights {
            None => (0..self.keys.len()).collect(),
            Some(w) => weighted_order(w, rand::random::<f64>),
        }
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
