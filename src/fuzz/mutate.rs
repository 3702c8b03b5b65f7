//! Structure-blind mutations of a corpus input: bit flips, boundary bytes,
//! the target's dictionary tokens, deletions, duplications and splices with
//! another input.

use rand::rngs::StdRng;
use rand::Rng;

/// Bytes that often sit on a parser's boundaries.
const INTERESTING: &[u8] = b"\0\t\n\r \"\\'{}[](),:;.-+*/%^eE0123456789\x7f\xc3\xa9\xff";

/// Mutates inputs for one target.
pub struct Mutator {
    dictionary: &'static [&'static str],
    max_len: usize,
}

impl Mutator {
    pub fn new(dictionary: &'static [&'static str], max_len: usize) -> Self {
        Mutator {
            dictionary,
            max_len,
        }
    }

    /// `base` with one to four mutations applied, cut to the maximum length.
    pub fn mutate(&self, rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = base.to_vec();
        // One mutation half the time: most inputs stay close to valid.
        let count = if rng.random_bool(0.5) {
            1
        } else {
            rng.random_range(2..=4)
        };
        for _ in 0..count {
            self.once(rng, &mut out, other);
        }
        out.truncate(self.max_len);
        out
    }

    fn once(&self, rng: &mut StdRng, out: &mut Vec<u8>, other: &[u8]) {
        let at = |rng: &mut StdRng, len: usize| rng.random_range(0..=len);
        match rng.random_range(0..9) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 | 3 if !self.dictionary.is_empty() => {
                let token = self.dictionary[rng.random_range(0..self.dictionary.len())];
                let i = at(rng, out.len());
                out.splice(i..i, token.bytes());
            }
            4 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                let n = rng.random_range(1..=(out.len() - i).min(16));
                out.drain(i..i + n);
            }
            5 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                let n = rng.random_range(1..=(out.len() - i).min(64));
                let copy = out[i..i + n].to_vec();
                let j = at(rng, out.len());
                for _ in 0..rng.random_range(1..=8) {
                    out.splice(j..j, copy.iter().copied());
                }
            }
            6 if !other.is_empty() => {
                let i = rng.random_range(0..other.len());
                let n = rng.random_range(1..=(other.len() - i));
                let j = at(rng, out.len());
                let end = rng.random_range(j..=out.len());
                out.splice(j..end, other[i..i + n].iter().copied());
            }
            7 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out.truncate(i);
            }
            _ => {
                let i = at(rng, out.len());
                out.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]);
            }
        }
    }
}
