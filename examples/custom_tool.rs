//! A tool of your own, registered from Rust next to the built-in ones, run by
//! an embedded worker, fed by the producer API.
//!
//! ```text
//! cargo run --example custom_tool
//! ```
//!
//! Uses the Redis at `TOOLQ_REDIS_URL`, or starts a throw-away `redis-server`
//! when that is unset. Prints one result JSON per line: the custom tool, the
//! same job again (served from the cache, `"cached": true`), and a built-in.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use toolq::config::Config;
use toolq::job::Job;
use toolq::producer::Producer;
use toolq::redis_server::RedisServer;
use toolq::tools::{JobContext, Registry, Tool, ToolError};
use toolq::worker::{Shutdown, Worker};

/// Counts the words of `{"text": "..."}`. Pure, so its answers can be cached.
struct WordCount;

#[async_trait]
impl Tool for WordCount {
    fn name(&self) -> &str {
        "word_count"
    }

    /// Bad input goes straight to the dead set instead of being retried.
    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        match args.get("text") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(ToolError::InvalidArgs(
                r#"expected {"text": "some words"}"#.into(),
            )),
        }
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let unique: std::collections::HashSet<&String> = words.iter().collect();
        Ok(json!({"words": words.len(), "unique": unique.len()}))
    }

    /// Declaring a TTL is all a tool does to be cached: the worker keeps its
    /// outputs in Redis and answers identical jobs from there.
    fn cache_ttl(&self) -> Option<Duration> {
        Some(Duration::from_secs(60))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Kept alive until the end of `main` when we started it.
    let mut own_redis = None;
    let redis_url = match std::env::var("TOOLQ_REDIS_URL") {
        Ok(url) => url,
        Err(_) => own_redis.insert(RedisServer::start()?).url(),
    };
    let queue = format!("custom-tool-example-{}", std::process::id());

    let mut registry = Registry::with_builtins();
    registry.register(WordCount);
    let config = Config {
        redis_url: redis_url.clone(),
        queues: vec![queue.clone()],
        concurrency: 4,
        http_addr: "off".into(),
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(Worker::new(config, registry).run(shutdown.clone()));

    let producer = Producer::connect(&redis_url, None)?;
    let text = json!({"text": "the quick brown fox jumps over the lazy dog"});
    let jobs = [
        Job::new("word_count", text.clone()),
        Job::new("word_count", text),
        Job::new("calculator", json!({"expression": "2*(3+4)"})),
    ];
    // One after the other, so the second finds the first one's cache entry.
    for job in jobs {
        let id = producer.enqueue(&queue, job).await?;
        let result = producer.wait(&queue, &id, Duration::from_secs(30)).await?;
        println!("{}", serde_json::to_string(&result)?);
    }

    shutdown.begin();
    worker.await??;
    Ok(())
}
