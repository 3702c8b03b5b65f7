//! The examples build and run against a test Redis: `examples/custom_tool.rs`
//! and `examples/progress_tool.rs`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// `cargo test` builds the examples next to the test binaries; when only this
/// test was asked for they are built here (the same target directory, so
/// nothing is rebuilt but the example).
fn example(name: &str) -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // The variables cargo sets for a test binary would reach build scripts
    // that watch them (ring watches CARGO_MANIFEST_DIR) and make this build
    // and the next `cargo test` rebuild half the dependency tree in turn.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&key.as_ref());
        if set_for_tests {
            cargo.env_remove(key.as_ref());
        }
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "cargo build --example {name}: {status}");
    // target/debug/deps/examples-<hash> → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    dir.join("examples").join(name)
}

#[test]
fn custom_tool_example_runs_next_to_the_builtins() {
    let redis = common::redis();
    let exe = example("custom_tool");
    let out = Command::new(&exe)
        .env("TOOLQ_REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one result JSON per line"))
        .collect();
    assert_eq!(results.len(), 3, "{stdout}");
    for r in &results {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert_eq!(results[0]["tool"], "word_count");
    assert_eq!(results[0]["output"]["words"], 9);
    assert_eq!(results[0]["output"]["unique"], 8);
    assert_eq!(results[0]["cached"], false);
    assert_eq!(results[1]["cached"], true, "the custom tool's cache");
    assert_eq!(results[1]["output"], results[0]["output"]);
    assert_eq!(results[2]["tool"], "calculator");
    assert_eq!(results[2]["output"]["result"], 14);
}

#[test]
fn progress_tool_example_shows_progress_while_the_job_runs() {
    let redis = common::redis();
    let exe = example("progress_tool");
    let out = Command::new(&exe)
        .env("TOOLQ_REDIS_URL", redis.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let reports: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("progress "))
        .collect();
    // Five pages 300 ms apart, polled every 100 ms: most are seen, the last
    // always (it is stored before the job settles).
    assert!(reports.len() >= 3, "{stdout}");
    assert_eq!(
        reports.last().map(|l| **l),
        Some("progress 100% page 5 of 5")
    );
    let result: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"]["pages"], 5);
    assert_eq!(result["output"]["job"], result["id"]);
    assert_eq!(result["output"]["attempt"], 0);
}
