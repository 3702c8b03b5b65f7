//! The fuzz targets of `src/fuzz/` (issue 19), each a test: the seed corpus
//! in `fuzz/corpus/<target>/`, then a fixed number of mutations from a fixed
//! seed, so the suite is deterministic and short. `scripts/fuzz.sh SECONDS`
//! runs the same tests for that long each, from a fresh seed:
//! `TOOLQ_TEST_FUZZ_SECONDS` sets the time, `TOOLQ_TEST_FUZZ_SEED` the seed
//! (to replay a failure the output names).

use std::path::Path;
use std::time::Duration;

use toolq::fuzz::{self, Budget};

/// The suite's seed: fixed, so every run tries the same inputs.
const CI_SEED: u64 = 19;

fn run(name: &str, ci_runs: u64) {
    let target = fuzz::target(name).expect("a known target");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seconds = std::env::var("TOOLQ_TEST_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let seed = std::env::var("TOOLQ_TEST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| match seconds {
            Some(_) => rand::random(),
            None => CI_SEED,
        });
    let budget = match seconds {
        Some(s) => Budget::Time(Duration::from_secs(s)),
        None => Budget::Runs(ci_runs),
    };
    match fuzz::run(target, &corpus, seed, budget) {
        Ok(report) => println!(
            "{}: {} corpus inputs + {} mutated runs in {:.1?} (seed {})",
            report.target, report.corpus, report.runs, report.elapsed, report.seed
        ),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn job_parse() {
    run("job_parse", 20_000);
}

#[test]
fn job_rewrite() {
    run("job_rewrite", 25_000);
}

#[test]
fn job_head() {
    run("job_head", 5_000);
}

#[test]
fn calculator() {
    run("calculator", 100_000);
}

#[test]
fn calculator_args() {
    run("calculator_args", 100_000);
}

#[test]
fn weather_response() {
    run("weather_response", 100_000);
}

#[test]
fn schema() {
    run("schema", 30_000);
}

#[test]
fn config() {
    run("config", 1_500);
}

#[test]
fn duration() {
    run("duration", 100_000);
}

#[test]
fn rate_limit() {
    run("rate_limit", 100_000);
}

#[test]
fn spec() {
    run("spec", 100_000);
}

#[test]
fn every_target_has_a_test_and_a_seed_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let this = include_str!("fuzz.rs");
    for target in fuzz::targets() {
        assert!(
            this.contains(&format!("run(\"{}\"", target.name)),
            "{} has no test",
            target.name
        );
        assert!(
            !fuzz::corpus(&corpus, target.name).is_empty(),
            "{} has no seed corpus",
            target.name
        );
    }
}
