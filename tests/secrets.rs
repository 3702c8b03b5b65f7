//! A Redis password given in the URL never reaches stdout or stderr: the
//! real `toolq` binary logs the URL with the password as `***` when Redis
//! answers, when it is unreachable, when it refuses the password, and when
//! the URL is not valid configuration at all.

mod common;

use std::time::Duration;

use common::process::{run, toolq, Toolq};
use common::*;
use toolq::redis_server::{free_port, RedisServer};

const SECRET: &str = "s3cretpw";
const WAIT: Duration = Duration::from_secs(30);

fn assert_no_secret(what: &str, output: &str) {
    assert!(
        !output.contains(SECRET),
        "{what} printed the password:\n{output}"
    );
}

fn protected_redis() -> RedisServer {
    RedisServer::start_with(&["--requirepass", SECRET]).unwrap()
}

/// A worker with `url`; returns it once it has logged its start line.
async fn worker_on(url: &str, rust_log: &str, log_format: &str) -> Toolq {
    let mut cmd = toolq(&["worker", "--http-addr", "off", "--redis-url", url]);
    cmd.args(["--queue", &queue_name("secrets")])
        .env("RUST_LOG", rust_log)
        .env("TOOLQ_LOG_FORMAT", log_format);
    let worker = Toolq::spawn(cmd);
    worker.wait_for_stderr("starting worker", WAIT).await;
    worker
}

async fn stop(mut worker: Toolq) -> String {
    worker.terminate();
    let status = worker.wait(WAIT).await;
    assert!(
        status.success(),
        "worker exit {status}:\n{}",
        worker.stderr()
    );
    worker.output()
}

#[tokio::test]
async fn a_worker_logs_its_redis_url_with_the_password_masked() {
    let server = protected_redis();
    let port = server.port();
    let url = format!("redis://default:{SECRET}@127.0.0.1:{port}");
    let masked = format!("redis://default:***@127.0.0.1:{port}");
    for format in ["pretty", "json"] {
        let worker = worker_on(&url, "toolq=debug", format).await;
        // It really logged in: it registered with the protected server.
        let con = raw(&url).await;
        eventually(WAIT, "the worker's registration", || {
            let mut con = con.clone();
            async move {
                let n: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
                n > 0
            }
        })
        .await;
        let output = stop(worker).await;
        assert!(output.contains(&masked), "{format} log: {output}");
        assert_no_secret(format, &output);
    }
}

#[tokio::test]
async fn an_unreachable_redis_or_a_wrong_password_is_logged_without_the_password() {
    // Nothing listens: the worker keeps retrying, with everything logged.
    let port = free_port().unwrap();
    let url = format!("redis://default:{SECRET}@127.0.0.1:{port}");
    let worker = worker_on(&url, "debug", "pretty").await;
    worker.wait_for_stderr("redis unreachable", WAIT).await;
    let output = stop(worker).await;
    assert!(
        output.contains(&format!("default:***@127.0.0.1:{port}")),
        "{output}"
    );
    assert_no_secret("worker, Redis unreachable", &output);

    // Redis answers but refuses the password.
    let server = protected_redis();
    let wrong = format!("redis://default:wrong-{SECRET}@127.0.0.1:{}", server.port());
    let worker = worker_on(&wrong, "debug", "json").await;
    worker.wait_for_stderr("AuthenticationFailed", WAIT).await;
    let output = stop(worker).await;
    let masked = format!("redis://default:***@127.0.0.1:{}", server.port());
    assert!(output.contains(&masked), "{output}");
    assert_no_secret("worker, wrong password", &output);

    let mut cmd = toolq(&["enqueue", "echo", "{}", "--redis-url", &wrong]);
    cmd.env("RUST_LOG", "debug");
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&masked), "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert_no_secret("enqueue, wrong password", &format!("{stdout}{stderr}"));
}

/// Runs `toolq enqueue` with configuration that is invalid; expects exit 2
/// and a message naming `redis_url` and where it came from.
async fn config_error(cmd: std::process::Command, source: &str) {
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redis_url"), "names the key: {stderr}");
    assert!(
        stderr.contains(source),
        "names the source {source:?}: {stderr}"
    );
    assert_no_secret("a configuration error", &format!("{stdout}{stderr}"));
}

#[tokio::test]
async fn invalid_redis_urls_are_config_errors_that_keep_the_password() {
    let bad = format!("http://u:{SECRET}@x");

    let mut cmd = toolq(&["enqueue", "echo", "{}"]);
    cmd.env("TOOLQ_REDIS_URL", &bad);
    config_error(cmd, "TOOLQ_").await;

    let cmd = toolq(&["enqueue", "echo", "{}", "--redis-url", &bad]);
    config_error(cmd, "command-line").await;

    // From a file, including a value of the wrong type.
    let dir = tempfile::tempdir().unwrap();
    for (name, line) in [
        ("scheme.toml", format!("redis_url = {bad:?}")),
        ("type.toml", format!("redis_url = [{bad:?}]")),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, format!("{line}\n")).unwrap();
        let mut cmd = toolq(&["enqueue", "echo", "{}", "--config"]);
        cmd.arg(&file);
        config_error(cmd, name).await;
    }
}
