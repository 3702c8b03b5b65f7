//! The soak's five-minute variant (`scripts/soak.py`, the long run is
//! `scripts/soak.sh 1h`): three real worker processes under a fixed-rate
//! mixed load (retries, dead jobs, scheduled jobs, cache hits), workers
//! SIGKILLed and restarted every 45 s, Redis restarted once. The script
//! fails on any lost job or on memory that keeps growing once warm; the
//! test also checks that the faults it claims happened did happen.

use std::process::Command;

#[test]
fn five_minutes_of_mixed_load_with_kills_and_a_redis_restart_lose_nothing_and_do_not_grow() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/soak.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--duration", "300", "--rate", "100", "--kill-every", "45"])
        .args(["--sample-every", "5", "--bin", env!("CARGO_BIN_EXE_toolq")])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}{err}");
    assert!(out.status.success(), "soak failed:\n{text}\n{err}");
    let kills = text
        .lines()
        .filter(|l| l.contains("SIGKILL worker"))
        .count();
    assert!(kills >= 5, "expected a kill every 45 s, saw {kills}");
    assert!(
        text.contains("Redis restarted"),
        "no Redis restart:\n{text}"
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("jobs enqueued"))
        .expect("a summary line");
    let enqueued: u64 = summary
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .expect("a count");
    // 100 jobs/s for 300 s, less what a Redis restart refused.
    assert!(
        enqueued > 25_000,
        "too little load to mean anything: {summary}"
    );
    assert!(summary.ends_with("lost 0"), "{summary}");
    assert!(text.contains("soak: PASSED"));
}
