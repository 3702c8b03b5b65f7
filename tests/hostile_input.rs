//! What a hostile-input trial found (issue 19), each against a real `toolq
//! worker` process and a real `redis-server`: job ids and tool names that
//! try to forge log lines or drive the operator's terminal (the pretty log,
//! `toolq dead list`), JSON log lines with two `message` keys, and the job
//! fields the parser let through (`attempt` that wraps, `max_attempts: 0`,
//! `meta` that is not an object) or that left a producer waiting for ever
//! (an invalid payload whose id can still be read).

mod common;
mod support;

use std::time::Duration;

use common::process::{run, toolq, Toolq};
use common::*;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Value};
use support::fake_weather::{FakeWeather, Reply};
use toolq::job::Job;
use toolq::producer::{BatchOptions, Producer};
use toolq::queue::QueueKeys;

const WAIT: Duration = Duration::from_secs(30);
/// A line a job id tries to slip into the log, timestamp and all.
const FORGED: &str = "2026-12-02T21:00:00.000000Z  INFO toolq: FORGED LINE";
const KEY: &str = "hostile-input-test-key-0123456789";

/// A worker process on `queue` logging in `format`; returned once started.
async fn worker(url: &str, queue: &str, format: &str, env: &[(&str, &str)]) -> Toolq {
    let mut cmd = toolq(&["worker", "--queue", queue, "--http-addr", "off"]);
    cmd.env("TOOLQ_REDIS_URL", url)
        .env("TOOLQ_LOG_FORMAT", format)
        .env("TOOLQ_BACKOFF_BASE_MS", "20")
        .env("TOOLQ_BACKOFF_MAX_MS", "100");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let worker = Toolq::spawn(cmd);
    worker.wait_for_stderr("starting worker", WAIT).await;
    worker
}

/// Stops the worker (SIGTERM) and returns what it logged.
async fn stop(mut worker: Toolq) -> String {
    worker.terminate();
    let status = worker.wait(WAIT).await;
    assert!(
        status.success(),
        "worker exit {status}:\n{}",
        worker.stderr()
    );
    worker.stderr()
}

fn assert_no_injection(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} carries raw control characters: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with(&FORGED[..19])),
        "{what} has a forged line:\n{text}"
    );
}

#[tokio::test]
async fn job_ids_and_tool_names_cannot_forge_lines_or_drive_the_terminal() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("inject");
    let worker = worker(&url, &q, "pretty", &[]).await;
    let mut con = raw(&url).await;
    let forged_id = format!("f\n{FORGED}");
    let esc_id = "e\u{1b}]0;pwned\u{7}\u{1b}[2J";
    lpush(
        &mut con,
        &q,
        &[
            json!({"id": forged_id, "tool": "fail", "args": {"permanent": true}}).to_string(),
            json!({"id": esc_id, "tool": "\u{1b}[31mred", "args": {}}).to_string(),
        ],
    )
    .await;
    for id in [forged_id.as_str(), esc_id] {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "dead", "{r}");
    }

    let mut list = toolq(&["dead", "list", "--queue", &q]);
    list.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = run(list, WAIT).await;
    assert!(status.success(), "dead list: {err}");
    assert!(out.contains("FORGED LINE"), "{out}");
    assert_no_injection("toolq dead list", &out);

    let log = stop(worker).await;
    assert!(
        log.contains("FORGED LINE"),
        "the job was not logged:\n{log}"
    );
    assert!(log.contains("red"), "the tool was not logged:\n{log}");
    assert_no_injection("the pretty log", &log);
}

/// The top-level keys of one JSON object, duplicates kept (a `Map` would
/// keep one of them and hide the bug).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(KeysVisitor)
    }
}

#[tokio::test]
async fn json_log_lines_carry_one_message_key() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("json-log");
    let worker = worker(&url, &q, "json", &[]).await;
    let mut con = raw(&url).await;
    lpush(
        &mut con,
        &q,
        &[
            r#"{"tool": 5, "args": {}}"#.to_owned(),
            json!({"id": "u", "tool": "no-such-tool", "args": {}}).to_string(),
        ],
    )
    .await;
    eventually(WAIT, "both jobs dead", || {
        let mut con = con.clone();
        let q = q.clone();
        async move { dead_entries(&mut con, &q).await.len() == 2 }
    })
    .await;
    let log = stop(worker).await;
    let mut buried = 0;
    for line in log.lines() {
        let keys = serde_json::from_str::<Keys>(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
            .0;
        let messages = keys.iter().filter(|k| *k == "message").count();
        assert!(messages <= 1, "{messages} message keys: {line}");
        let v: Value = serde_json::from_str(line).unwrap();
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("burying"))
        {
            buried += 1;
            assert!(
                v["error"].is_string(),
                "the reason is its own field: {line}"
            );
        }
    }
    assert_eq!(buried, 2, "both burials logged:\n{log}");
}

#[tokio::test]
async fn job_fields_out_of_range_are_refused_and_never_run_too_often() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("fields");
    let keys = QueueKeys::new(&q);
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::error(503, "maintenance"));
    let base = server.base_url();
    let env = [
        ("OPENWEATHER_API_KEY", KEY),
        ("TOOLQ_TOOLS__WEATHER__BASE_URL", base.as_str()),
    ];
    let worker = worker(&url, &q, "pretty", &env).await;
    let mut con = raw(&url).await;

    // attempt + 1 wrapped to 0: the job ran 4 times with max_attempts 3.
    let wrap = json!({"id": "wrap", "tool": "weather", "args": {"city": "Oslo"},
        "attempt": u32::MAX, "max_attempts": 3});
    lpush(&mut con, &q, &[wrap.to_string()]).await;
    let r = wait_result(&mut con, &q, "wrap", WAIT).await;
    assert_eq!(r["status"], "dead", "{r}");
    // Retries would come within the 100 ms backoff ceiling; give them 1 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.requests().len(), 1, "ran more than once");
    assert_eq!(zcard(&mut con, &keys.delayed).await, 0);
    assert_eq!(llen(&mut con, &keys.pending).await, 0);

    let refused = [
        (
            json!({"id": "zero", "tool": "weather", "args": {"city": "Oslo"}, "max_attempts": 0}),
            "job field `max_attempts` must be at least 1",
        ),
        (
            json!({"id": "meta", "tool": "echo", "args": {}, "meta": "not an object"}),
            "job field `meta` must be an object",
        ),
        (
            json!({"id": "inv", "tool": 5, "args": {}, "batch": "b-inv"}),
            "job field `tool` must be a string",
        ),
    ];
    for (job, message) in refused {
        let id = job["id"].as_str().unwrap().to_owned();
        lpush(&mut con, &q, &[job.to_string()]).await;
        let r = wait_result(&mut con, &q, &id, WAIT).await;
        assert_eq!(r["status"], "dead", "{r}");
        assert_eq!(r["id"], id.as_str());
        assert_eq!(r["error"]["kind"], "wrong_type", "{r}");
        assert_eq!(r["error"]["message"], message, "{r}");
    }
    assert_eq!(server.requests().len(), 1, "a refused job ran");
    // The invalid job's batch was told, as a valid job's would be.
    let told: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.batch("b-inv"))
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(told, ["inv"]);
    let dead = dead_entries(&mut con, &q).await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    stop(worker).await;
}

#[tokio::test]
async fn a_producer_waiting_on_a_job_the_worker_refuses_gets_its_dead_result() {
    let redis = redis();
    let url = redis.url();
    let q = queue_name("refused-wait");
    // The producer allows 64 levels of nesting; this worker only 4.
    let worker = worker(&url, &q, "pretty", &[("TOOLQ_MAX_JSON_DEPTH", "4")]).await;
    let producer = Producer::connect(&url, None).unwrap();
    let job = Job::new("echo", json!({"a": {"b": {"c": {"d": {}}}}}));
    let r = tokio::time::timeout(
        WAIT,
        producer.enqueue_and_wait(&q, job, &BatchOptions::default(), Duration::from_secs(20)),
    )
    .await
    .expect("the producer returns")
    .expect("with the job's dead result");
    assert_eq!(r.status, "dead", "{r:?}");
    let error = r.error.expect("an error");
    assert_eq!(error.kind, "too_deep", "{error:?}");
    assert_eq!(r.tool, "echo");
    stop(worker).await;
}
