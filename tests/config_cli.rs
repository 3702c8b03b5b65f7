//! Bad configuration stops start-up with exit code 2 and a message naming
//! the key and where its value came from (the real binary, clean env).

mod common;

use std::time::Duration;

use common::process::{run, toolq};

const WITHIN: Duration = Duration::from_secs(20);

async fn fails_with(mut cmd: std::process::Command, needles: &[&str]) {
    cmd.env("TOOLQ_REDIS_URL", "redis://127.0.0.1:1");
    let (status, stdout, stderr) = run(cmd, WITHIN).await;
    assert_eq!(status.code(), Some(2), "stdout: {stdout}\nstderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[tokio::test]
async fn a_wrong_type_in_an_env_variable_names_the_key_and_the_variable() {
    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_CONCURRENCY", "lots");
    fails_with(cmd, &["concurrency", "TOOLQ_"]).await;
}

#[tokio::test]
async fn an_out_of_range_value_names_the_key_and_the_rule() {
    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_CONCURRENCY", "0");
    fails_with(cmd, &["`concurrency`", "must be 1..="]).await;
    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_HEARTBEAT_TIMEOUT_MS", "100");
    fails_with(cmd, &["heartbeat_timeout_ms", "twice"]).await;
    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_RESULT_TTL_S", "100000000000000000");
    fails_with(cmd, &["`result_ttl_s`", "at most 315360000"]).await;
}

#[tokio::test]
async fn a_bad_flag_value_names_the_flag_as_the_source() {
    let cmd = toolq(&["worker", "--http-addr", "off", "--queue", "a{b}"]);
    fails_with(cmd, &["`queues`", "command-line flag", "braces"]).await;
    let cmd = toolq(&["worker", "--http-addr", "nowhere"]);
    fails_with(cmd, &["`http_addr`", "command-line flag"]).await;
}

#[tokio::test]
async fn a_bad_config_file_is_named_and_a_missing_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(&file, "concurrency = \"many\"\n").unwrap();
    let path = file.to_str().unwrap();
    fails_with(
        toolq(&["--config", path, "worker"]),
        &["concurrency", "toolq.toml"],
    )
    .await;
    let missing = dir.path().join("nope.toml");
    let missing = missing.to_str().unwrap();
    fails_with(
        toolq(&["--config", missing, "worker"]),
        &["nope.toml", "does not exist"],
    )
    .await;
}
