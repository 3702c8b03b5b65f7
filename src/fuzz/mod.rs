//! Property fuzzing of the parsers that read outside data (issue 19),
//! compiled only with the `test-tools` feature, like the test fixtures.
//!
//! Each target is a function of one input that panics when a property
//! fails. [`run`] feeds it the seed corpus kept in `fuzz/corpus/<target>/`,
//! then mutations of it drawn from a seeded generator: a fixed seed and a
//! fixed number of runs in the test suite (`tests/fuzz.rs`, deterministic),
//! a fresh seed and a time budget on demand (`scripts/fuzz.sh SECONDS`). A
//! failing input is shrunk and printed with the seed that found it.
//!
//! Why not `bolero` or libFuzzer: `bolero` builds and runs here on stable,
//! but its test mode draws each run's seed from the OS, so the suite would
//! not be deterministic; libFuzzer needs a nightly toolchain. Coverage
//! guidance is what this driver lacks; the dictionaries of tokens each
//! target declares make up for part of it.

mod calculator;
mod config;
mod job;
mod job_gen;
mod mutate;
mod schema;
mod text;
mod weather;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use mutate::Mutator;

/// One fuzz target: its name (also its corpus folder), the tokens its
/// inputs are made of, and the property check.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub dictionary: &'static [&'static str],
    /// Largest input tried, in bytes.
    pub max_len: usize,
    /// Builds an input from scratch, structure first (JSON jobs): half the
    /// inputs of a target that has one, so most of them get past the
    /// syntax and test the properties behind it.
    pub generate: Option<fn(&mut StdRng) -> Vec<u8>>,
    pub check: fn(&[u8]),
}

/// Every target, by name.
pub fn targets() -> Vec<Target> {
    vec![
        job::PARSE,
        job::REWRITE,
        job::HEAD,
        calculator::EXPRESSION,
        calculator::ARGS,
        weather::RESPONSE,
        schema::SCHEMA,
        config::CONFIG,
        text::DURATION,
        text::RATE,
        text::SPEC,
    ]
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many mutated inputs after the corpus (the test suite).
    Runs(u64),
    /// Mutated inputs until this much time has passed (on demand).
    Time(Duration),
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    pub corpus: usize,
    pub runs: u64,
    pub elapsed: Duration,
}

/// A property failed: the input, shrunk, and how it was found.
#[derive(Debug)]
pub struct Failure {
    pub target: &'static str,
    pub seed: u64,
    pub run: u64,
    pub input: Vec<u8>,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz target {} failed (seed {}, run {}): {}\ninput ({} bytes): {:?}",
            self.target,
            self.seed,
            self.run,
            self.message,
            self.input.len(),
            String::from_utf8_lossy(&self.input)
        )
    }
}

/// Reads the seed corpus of `target` from `dir/<target>/` (every file, in
/// name order); a missing folder is an empty corpus.
pub fn corpus(dir: &Path, target: &str) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Runs `target` on its corpus, then on mutations of it, until `budget`
/// is spent or a property fails.
pub fn run(
    target: Target,
    corpus_dir: &Path,
    seed: u64,
    budget: Budget,
) -> Result<Report, Box<Failure>> {
    // A failure is reported once, shrunk, by the caller: the panics on the
    // way stay quiet.
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = run_quietly(target, corpus_dir, seed, budget);
    panic::set_hook(hook);
    result
}

fn run_quietly(
    target: Target,
    corpus_dir: &Path,
    seed: u64,
    budget: Budget,
) -> Result<Report, Box<Failure>> {
    let started = Instant::now();
    let mut seeds = corpus(corpus_dir, target.name);
    let corpus_len = seeds.len();
    let fail = |run: u64, input: &[u8], message: String| {
        let input = shrink(target, input);
        let message = try_check(target, &input).err().unwrap_or(message);
        Box::new(Failure {
            target: target.name,
            seed,
            run,
            input,
            message,
        })
    };
    for (i, input) in seeds.iter().enumerate() {
        if let Err(message) = try_check(target, input) {
            return Err(fail(i as u64, input, message));
        }
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mutator = Mutator::new(target.dictionary, target.max_len);
    let mut runs = 0u64;
    loop {
        match budget {
            Budget::Runs(n) if runs >= n => break,
            Budget::Time(t) if started.elapsed() >= t => break,
            _ => {}
        }
        let base = &seeds[rng.random_range(0..seeds.len())];
        let other = &seeds[rng.random_range(0..seeds.len())];
        let input = match target.generate {
            Some(generate) if rng.random_bool(0.5) => generate(&mut rng),
            _ => mutator.mutate(&mut rng, base, other),
        };
        runs += 1;
        if let Err(message) = try_check(target, &input) {
            return Err(fail(runs, &input, message));
        }
        // Keep some mutants as bases, so mutations compound.
        if seeds.len() < corpus_len + 256 && rng.random_ratio(1, 8) {
            seeds.push(input);
        }
    }
    Ok(Report {
        target: target.name,
        seed,
        corpus: corpus_len,
        runs,
        elapsed: started.elapsed(),
    })
}

/// The check's panic message, if it panicked.
fn try_check(target: Target, input: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.check)(input))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "panic".to_owned())
    })
}

/// The smallest input found, by removing chunks and bytes while the check
/// still fails (a greedy delta debugging pass).
fn shrink(target: Target, input: &[u8]) -> Vec<u8> {
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    let mut tries = 0;
    while chunk >= 1 && tries < 4000 {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() && tries < 4000 {
            let mut candidate = best.clone();
            candidate.drain(i..(i + chunk).min(best.len()));
            tries += 1;
            if try_check(target, &candidate).is_err() {
                best = candidate;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}
