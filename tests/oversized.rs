//! Oversized payloads against real worker processes and a real
//! `redis-server` (issue 19): twenty 10 MB payloads pushed at once are all
//! buried as `too_large` without a worker downloading them, a producer
//! waiting on one of them hears its fate, ordinary jobs around them run,
//! and the dead set keeps kilobytes, not the 200 MB pushed.
//!
//! The test prints each worker's peak RSS (`VmHWM`) and Redis's
//! `used_memory_peak`. `TOOLQ_TEST_WORKER_BIN` runs another `toolq` binary
//! as the workers (e.g. an earlier build, to measure it the same way).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;
use toolq::job::Job;
use toolq::producer::{BatchOptions, Producer};
use toolq::queue::QueueKeys;

const PAYLOAD_BYTES: usize = 10 * 1024 * 1024;
const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
const PATIENCE: Duration = Duration::from_secs(120);

/// A worker process, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Worker {
    fn start(url: &str, queue: &str, log: &std::fs::File) -> Worker {
        let bin = std::env::var("TOOLQ_TEST_WORKER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_toolq").to_owned());
        let child = Command::new(bin)
            .args(["worker", "--queue", queue, "--concurrency", "10"])
            .args(["--http-addr", "off"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TOOLQ_REDIS_URL", url)
            .env("TOOLQ_ENABLE_TEST_TOOLS", "1")
            .env("TOOLQ_MAX_PAYLOAD_BYTES", MAX_PAYLOAD_BYTES.to_string())
            .env("RUST_LOG", "toolq=info")
            .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .expect("toolq worker starts");
        Worker(child)
    }

    /// Peak resident set size so far, in bytes (`VmHWM`).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/<pid>/status");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb * 1024
    }
}

/// A 10 MB echo job whose fields come before its `args`.
fn big(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","tool":"echo","args":{{"s":"{}"}}}}"#,
        "x".repeat(PAYLOAD_BYTES)
    )
}

fn small(id: &str) -> String {
    json!({"id": id, "tool": "echo", "args": {"n": id}}).to_string()
}

async fn info_field(con: &mut redis::aio::MultiplexedConnection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_ten_megabyte_payloads_are_buried_without_being_downloaded() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("oversized");
    let keys = QueueKeys::new(&queue);
    let mut con = raw(&url).await;
    let log = tempfile::NamedTempFile::new().unwrap();

    // Ordinary jobs, 19 payloads of 10 MB, ordinary jobs, pushed at once:
    // one pipeline, a command per payload (one command of 200 MB would
    // cost Redis as much again in its input buffer, before any worker).
    let mut payloads: Vec<String> = (0..5).map(|i| small(&format!("before{i}"))).collect();
    payloads.extend((0..19).map(|i| big(&format!("big{i}"))));
    payloads.extend((0..5).map(|i| small(&format!("after{i}"))));
    let mut pipe = redis::pipe();
    for p in &payloads {
        pipe.lpush(&keys.pending, p).ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
    drop(payloads);

    // The 20th through the Rust producer, which waits for it: its payload
    // carries `id` first and `batch` last, after the 10 MB of `args`.
    let producer = Producer::connect(&url, None).unwrap();
    let mut job = Job::new("echo", json!({"s": "y".repeat(PAYLOAD_BYTES)}));
    job.id = Some("big-waited".into());
    let q = queue.clone();
    let waiting = tokio::spawn(async move {
        producer
            .enqueue_and_wait(&q, job, &BatchOptions::default(), PATIENCE)
            .await
    });
    eventually(Duration::from_secs(30), "the producer's push", || {
        let mut con = con.clone();
        let pending = keys.pending.clone();
        async move { llen(&mut con, &pending).await == 30 }
    })
    .await;
    let redis_before = info_field(&mut con, "used_memory").await;
    let peak_before = info_field(&mut con, "used_memory_peak").await;

    let workers = [
        Worker::start(&url, &queue, log.as_file()),
        Worker::start(&url, &queue, log.as_file()),
    ];

    // Every job settled: the 20 in the dead set, the ordinary ones run.
    eventually(PATIENCE, "20 dead entries", || {
        let mut con = con.clone();
        let dead = keys.dead.clone();
        async move { zcard(&mut con, &dead).await == 20 }
    })
    .await;
    for id in (0..5).flat_map(|i| [format!("before{i}"), format!("after{i}")]) {
        let r = wait_result(&mut con, &queue, &id, PATIENCE).await;
        assert_eq!(r["status"], "succeeded", "{r}");
    }

    let rss: Vec<u64> = workers.iter().map(Worker::peak_rss).collect();
    let redis_peak = info_field(&mut con, "used_memory_peak").await;
    let redis_now = info_field(&mut con, "used_memory").await;
    let dead = dead_entries(&mut con, &queue).await;
    let dead_bytes: usize = {
        let raw: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.dead)
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .unwrap();
        raw.iter().map(String::len).sum()
    };
    println!(
        "worker peak RSS (VmHWM): {:.1} MB, {:.1} MB; redis used_memory with the 200 MB pushed: \
         {:.1} MB (peak so far {:.1} MB), used_memory_peak: {:.1} MB, used_memory after: {:.1} MB; \
         dead set: {} entries, {:.2} MB",
        mb(rss[0]),
        mb(rss[1]),
        mb(redis_before),
        mb(peak_before),
        mb(redis_peak),
        mb(redis_now),
        dead.len(),
        mb(dead_bytes as u64)
    );

    let waited = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting producer hears")
        .unwrap()
        .expect("the waiting producer hears");
    assert_eq!(waited.status, "dead");
    let error = waited.error.expect("an error");
    assert_eq!(error.kind, "too_large", "{}", error.message);
    assert!(
        error.message.contains("over the 1048576-byte limit"),
        "{}",
        error.message
    );
    for i in 0..19 {
        let r = wait_result(&mut con, &queue, &format!("big{i}"), PATIENCE).await;
        assert_eq!(r["status"], "dead", "{r}");
        assert_eq!(r["error"]["kind"], "too_large", "{r}");
    }
    assert_eq!(dead.len(), 20);
    for e in &dead {
        assert_eq!(e["error"]["kind"], "too_large", "{}", e["error"]);
        let bytes = e["truncated"]["bytes"].as_u64().unwrap_or(0);
        assert!(bytes > PAYLOAD_BYTES as u64, "{}", e["truncated"]);
        assert_eq!(e["truncated"]["sha1"].as_str().map(str::len), Some(40));
        let kept = e["job"].as_str().expect("the payload's head, as a string");
        assert!(kept.len() <= 64 * 1024);
    }
    let waited_entry = dead
        .iter()
        .find(|e| e["truncated"]["id"] == "big-waited")
        .expect("the waited job's entry names its id");
    assert!(waited_entry["job"]
        .as_str()
        .unwrap()
        .starts_with(r#"{"id":"big-waited""#));
    let counted: Option<u64> = redis::cmd("HGET")
        .arg(&keys.stats)
        .arg("dead_bytes")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(counted, Some(dead_bytes as u64));
    assert!(
        dead_bytes < 2 * 1024 * 1024,
        "dead set holds {dead_bytes} bytes"
    );
    // Neither worker ever held a 10 MB payload (ten at once were 100 MB).
    for r in rss {
        assert!(r < 100 * 1024 * 1024, "worker peak RSS {:.1} MB", mb(r));
    }
    // Redis held the pushed payloads once (pending), never a second copy
    // in an active hash or a reply.
    assert!(
        redis_peak < redis_before + 100 * 1024 * 1024,
        "redis peaked at {:.1} MB, {:.1} MB with the jobs pushed",
        mb(redis_peak),
        mb(redis_before)
    );
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        log.contains("burying an oversized payload unread"),
        "{}",
        &log[..log.len().min(4000)]
    );
}

/// `toolq dead list`, `jobs list` and `job show` show such an entry by its
/// id and error, and `dead retry` refuses it with a reason instead of "no
/// such job".
#[tokio::test]
async fn a_truncated_dead_entry_is_listed_and_its_retry_refused() {
    let redis = redis();
    let url = redis.url();
    let queue = queue_name("truncated");
    let keys = QueueKeys::new(&queue);
    let mut con = raw(&url).await;
    let entry = json!({
        "job": r#"{"id":"big-1","tool":"echo","args":{"s":"xxxx"#,
        "truncated": {"bytes": 10485796, "sha1": "a".repeat(40), "id": "big-1"},
        "error": {"kind": "too_large", "message": "payload is 10485796 bytes, over the 1048576-byte limit"},
        "worker": "w",
        "slot": 1024,
        "died_at": 1,
    });
    redis_cmd(&mut con, &["ZADD", &keys.dead, "1", &entry.to_string()]).await;

    let mut cmd = common::process::toolq(&["dead", "list", "--queue", &queue]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = common::process::run(cmd, Duration::from_secs(30)).await;
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("big-1"), "{out}");
    assert!(
        out.contains("too_large: payload is 10485796 bytes"),
        "{out}"
    );

    // The job lookups find it by that id too.
    for args in [
        &["jobs", "list", "--state", "dead", "--queue", &queue][..],
        &["job", "show", "big-1", "--queue", &queue],
    ] {
        let mut cmd = common::process::toolq(args);
        cmd.env("TOOLQ_REDIS_URL", &url);
        let (status, out, err) = common::process::run(cmd, Duration::from_secs(30)).await;
        assert!(status.success(), "{args:?}: {out}{err}");
        assert!(out.contains("big-1"), "{args:?}: {out}");
        assert!(out.contains("dead"), "{args:?}: {out}");
    }

    let mut cmd = common::process::toolq(&["dead", "retry", "big-1", "--queue", &queue]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, out, err) = common::process::run(cmd, Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(err.contains("cannot be retried"), "{err}");
    assert!(err.contains("10485796 bytes"), "{err}");
    assert_eq!(zcard(&mut con, &keys.dead).await, 1, "the entry stays");
    assert_eq!(llen(&mut con, &keys.pending).await, 0);
}
