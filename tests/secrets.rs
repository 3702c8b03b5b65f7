//! A Redis password given in the URL never reaches stdout or stderr: the
//! real `toolq` binary logs the URL with the password as `***` when Redis
//! answers, when it is unreachable, when it refuses the password, and when
//! the URL is not valid configuration at all. A refused password says
//! "authentication failed" and exits 2 (configuration), an unreachable
//! Redis exits 3, both without connection-pool words.

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

    // Redis answers but refuses the password: the worker stops with exit
    // code 2 (bad configuration) instead of waiting for it.
    let server = protected_redis();
    let wrong = format!("redis://default:wrong-{SECRET}@127.0.0.1:{}", server.port());
    let mut worker = worker_on(&wrong, "debug", "json").await;
    let status = worker.wait(WAIT).await;
    let output = worker.output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("authentication failed"), "{output}");
    let masked = format!("redis://default:***@127.0.0.1:{}", server.port());
    assert!(output.contains(&masked), "{output}");
    assert_no_secret("worker, wrong password", &output);

    let mut cmd = toolq(&["enqueue", "echo", "{}", "--redis-url", &wrong]);
    cmd.env("RUST_LOG", "debug");
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&masked), "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert_no_secret("enqueue, wrong password", &format!("{stdout}{stderr}"));
}

/// Words of the connection pool that once leaked into messages.
const POOL_JARGON: &[&str] = &["object", "slot", "pool", "Backend", "recycl"];

fn assert_plain(what: &str, text: &str) {
    for word in POOL_JARGON {
        assert!(
            !text.to_lowercase().contains(&word.to_lowercase()),
            "{what}: {word:?} in {text}"
        );
    }
}

/// Every one-shot command that talks to Redis, on `url`.
fn one_shot_commands(url: &str) -> Vec<std::process::Command> {
    let q = queue_name("auth");
    let jobs = std::env::temp_dir().join(format!("{q}.jsonl"));
    std::fs::write(&jobs, "{\"tool\":\"echo\",\"args\":{}}\n").unwrap();
    let jobs = jobs.to_string_lossy().into_owned();
    let runs: [&[&str]; 7] = [
        &["enqueue", "echo", "{}", "--queue", &q],
        &["submit", &jobs, "--queue", &q],
        &["result", "some-id", "--queue", &q],
        &["stats"],
        &["tools"],
        &["dead", "list", "--queue", &q],
        &["dead", "purge", "--queue", &q, "--yes"],
    ];
    runs.iter()
        .map(|args| {
            let mut cmd = toolq(args);
            cmd.args(["--redis-url", url]);
            cmd
        })
        .collect()
}

#[tokio::test]
async fn a_wrong_or_missing_password_says_authentication_failed_and_exits_2() {
    let server = protected_redis();
    let port = server.port();
    for (url, why) in [
        (
            format!("redis://:wrong-{SECRET}@127.0.0.1:{port}"),
            "wrong user name or password",
        ),
        (
            format!("redis://nobody:{SECRET}@127.0.0.1:{port}"),
            "wrong user name or password",
        ),
        (
            format!("redis://127.0.0.1:{port}"),
            "requires a password and the URL has none",
        ),
    ] {
        for cmd in one_shot_commands(&url) {
            let what = format!("{cmd:?}");
            let (status, stdout, stderr) = run(cmd, WAIT).await;
            assert_eq!(status.code(), Some(2), "{what}: {stderr}");
            assert!(
                stderr.contains("redis authentication failed") && stderr.contains(why),
                "{what}: {stderr}"
            );
            assert!(!stderr.contains("unreachable"), "{what}: {stderr}");
            assert_plain(&what, &stderr);
            assert_no_secret(&what, &format!("{stdout}{stderr}"));
        }
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_said_without_connection_pool_words() {
    // Nothing listens on the port.
    let url = format!("redis://127.0.0.1:{}", free_port().unwrap());
    for cmd in one_shot_commands(&url) {
        let what = format!("{cmd:?}");
        let (status, _, stderr) = run(cmd, WAIT).await;
        assert_eq!(status.code(), Some(3), "{what}: {stderr}");
        assert!(
            stderr.contains("redis unreachable") && stderr.contains(&url),
            "{what}: {stderr}"
        );
        assert_plain(&what, &stderr);
    }
    let worker = worker_on(&url, "toolq=info", "pretty").await;
    worker.wait_for_stderr("redis unreachable", WAIT).await;
    let output = stop(worker).await;
    assert_plain("worker", &output);

    // A server that accepts connections but never answers (stopped).
    let server = RedisServer::start().unwrap();
    let pid = server.pid().unwrap() as libc::pid_t;
    // SAFETY: plain kill(2) on the server this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let (status, _, stderr) = run(toolq(&["stats", "--redis-url", &server.url()]), WAIT).await;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("redis unreachable"), "{stderr}");
    assert_plain("stats, silent server", &stderr);
}

#[tokio::test]
async fn a_running_worker_whose_password_stops_working_waits_and_says_why() {
    let server = protected_redis();
    let url = format!("redis://:{SECRET}@127.0.0.1:{}", server.port());
    let worker = worker_on(&url, "toolq=info", "pretty").await;
    let mut con = raw(&url).await;
    // Registered to the end: its tool catalog is the last thing it writes
    // before it runs (a password refused before then is a start-up error,
    // exit 2, not what this test is about).
    eventually(WAIT, "the worker's registration", || {
        let mut con = con.clone();
        async move {
            let k: Vec<String> = redis::cmd("KEYS")
                .arg("toolq:catalog:worker:*")
                .query_async(&mut con)
                .await
                .unwrap();
            !k.is_empty()
        }
    })
    .await;
    // The password changes and every connection is dropped: the worker's
    // reconnections are refused.
    redis_cmd(&mut con, &["CONFIG", "SET", "requirepass", "rotated"]).await;
    let _: redis::RedisResult<redis::Value> = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await;
    worker
        .wait_for_stderr("redis refuses this worker's credentials", WAIT)
        .await;
    // The password is back: the worker goes on, and stops cleanly.
    let rotated = format!("redis://:rotated@127.0.0.1:{}", server.port());
    let mut con = raw(&rotated).await;
    redis_cmd(&mut con, &["CONFIG", "SET", "requirepass", SECRET]).await;
    worker.wait_for_stderr("redis reachable again", WAIT).await;
    let output = stop(worker).await;
    assert_no_secret("worker, password rotated", &output);
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
