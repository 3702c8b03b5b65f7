//! Bad configuration stops start-up with exit code 2 and a message naming
//! the key and where its value came from; `toolq config` shows every value
//! with its source and no secret; profiles and secret files (the real
//! binary, clean env).

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
    fails_with(
        cmd,
        &[
            "`concurrency`",
            "TOOLQ_CONCURRENCY",
            "expected a positive integer",
        ],
    )
    .await;
    // In words, never Rust's type names.
    let mut cmd = toolq(&["config"]);
    cmd.env("TOOLQ_CONCURRENCY", "abc");
    let (_, _, stderr) = run(cmd, WITHIN).await;
    assert!(!stderr.contains("usize"), "{stderr}");
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

/// Runs `cmd` and returns its stdout; it must exit 0.
async fn succeeds(cmd: std::process::Command) -> String {
    let (status, stdout, stderr) = run(cmd, WITHIN).await;
    assert_eq!(status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

#[tokio::test]
async fn an_unknown_key_in_a_file_or_a_variable_stops_start_up_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(&file, "concurency = 4\n").unwrap();
    let path = file.to_str().unwrap();
    fails_with(
        toolq(&["--config", path, "worker", "--http-addr", "off"]),
        &[
            "unknown key `concurency`",
            "toolq.toml",
            "did you mean `concurrency`?",
        ],
    )
    .await;
    std::fs::write(&file, "[serve]\nadr = \"127.0.0.1:8080\"\n").unwrap();
    fails_with(
        toolq(&["--config", path, "stats"]),
        &["unknown key `serve.adr`", "did you mean `serve.addr`?"],
    )
    .await;

    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_CONCURENCY", "4");
    fails_with(
        cmd,
        &[
            "environment variable TOOLQ_CONCURENCY",
            "did you mean `concurrency` (TOOLQ_CONCURRENCY)?",
        ],
    )
    .await;
}

#[tokio::test]
async fn toolq_config_shows_each_value_with_its_source_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(
        &file,
        "concurrency = 7\n[tools.http.upper]\nurl = \"http://127.0.0.1:1/\"\n\
         headers = { Authorization = \"Bearer hdr-secret\" }\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let with_env = |args: &[&str]| {
        let mut cmd = toolq(args);
        cmd.env(
            "TOOLQ_REDIS_URL",
            "redis://worker:pw-s3cret@127.0.0.1:6379/0",
        )
        .env("OPENWEATHER_API_KEY", "weather-s3cret");
        cmd
    };
    let text = succeeds(with_env(&[
        "--config",
        path,
        "config",
        "--log-format",
        "json",
    ]))
    .await;
    let json = succeeds(with_env(&["--config", path, "config", "--json"])).await;
    for out in [&text, &json] {
        for secret in ["pw-s3cret", "weather-s3cret", "hdr-secret"] {
            assert!(!out.contains(secret), "{secret} shown:\n{out}");
        }
    }
    assert!(
        text.contains("redis_url = \"redis://worker:***@127.0.0.1:6379/0\"")
            && text.contains("# environment variable TOOLQ_REDIS_URL"),
        "{text}"
    );
    assert!(text.contains("command-line flag --log-format"), "{text}");

    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows["concurrency"]["value"], 7);
    let source = rows["concurrency"]["source"].as_str().unwrap();
    assert!(
        source.starts_with("TOML file ") && source.ends_with("toolq.toml"),
        "{source}"
    );
    assert_eq!(rows["max_attempts"]["source"], "default");
    assert_eq!(rows["tools.weather.api_key"]["value"], "***");
    assert_eq!(
        rows["tools.weather.api_key"]["source"],
        "environment variable OPENWEATHER_API_KEY"
    );
    assert_eq!(
        rows["tools.http.upper.headers.Authorization"]["value"],
        "***"
    );
}

#[tokio::test]
async fn the_profile_file_is_a_layer_and_production_refuses_clear_text_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(&file, "concurrency = 3\n").unwrap();
    std::fs::write(dir.path().join("production.toml"), "concurrency = 30\n").unwrap();
    let path = file.to_str().unwrap();
    let mut cmd = toolq(&["--config", path, "config", "--json"]);
    cmd.env("TOOLQ_PROFILE", "production");
    let rows: serde_json::Value = serde_json::from_str(&succeeds(cmd).await).unwrap();
    assert_eq!(rows["profile"]["value"], "production");
    assert_eq!(rows["concurrency"]["value"], 30);
    let source = rows["concurrency"]["source"].as_str().unwrap();
    assert!(source.ends_with("production.toml"), "{source}");

    let mut cmd = toolq(&["--config", path, "worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_PROFILE", "staging");
    fails_with(cmd, &["TOOLQ_PROFILE=\"staging\"", "production"]).await;

    let mut cmd = toolq(&["--config", path, "config"]);
    cmd.env("TOOLQ_PROFILE", "production").env(
        "TOOLQ_REDIS_URL",
        "redis://worker:pw-s3cret@redis.internal:6379",
    );
    let (status, stdout, stderr) = run(cmd, WITHIN).await;
    assert_eq!(status.code(), Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("production profile refuses `redis_url`")
            && stderr.contains("allow_insecure_redis")
            && !stderr.contains("pw-s3cret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secrets_come_from_the_files_their_variables_name() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("redis_password");
    std::fs::write(&password, "pw-s3cret\n").unwrap();
    let mut cmd = toolq(&["config", "--json"]);
    cmd.env("TOOLQ_REDIS_URL", "redis://worker@127.0.0.1:6379")
        .env("TOOLQ_REDIS_PASSWORD_FILE", &password);
    let out = succeeds(cmd).await;
    assert!(!out.contains("pw-s3cret"), "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rows["redis_url"]["value"],
        "redis://worker:***@127.0.0.1:6379"
    );
    let source = rows["redis_url"]["source"].as_str().unwrap();
    assert!(source.contains("TOOLQ_REDIS_PASSWORD_FILE"), "{source}");

    let mut cmd = toolq(&["worker", "--http-addr", "off"]);
    cmd.env("TOOLQ_REDIS_URL_FILE", dir.path().join("missing"));
    let (status, _, stderr) = run(cmd, WITHIN).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("TOOLQ_REDIS_URL_FILE") && stderr.contains("missing"),
        "{stderr}"
    );
}
