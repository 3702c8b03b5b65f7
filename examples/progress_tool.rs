//! A tool that reports its progress, run by an embedded worker, watched
//! from the producer side while it runs.
//!
//! ```text
//! cargo run --example progress_tool
//! ```
//!
//! Uses the Redis at `TOOLQ_REDIS_URL`, or starts a throw-away `redis-server`
//! when that is unset. Prints each progress report it sees as a line
//! (`progress 40% page 2 of 5`), then the result JSON.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use toolq::config::Config;
use toolq::job::Job;
use toolq::producer::{JobState, Producer};
use toolq::redis_server::RedisServer;
use toolq::tools::{JobContext, Registry, Tool, ToolError};
use toolq::worker::{Shutdown, Worker};

/// "Renders" `{"pages": N}` pages, 300 ms each, saying how far it is.
struct Render;

#[async_trait]
impl Tool for Render {
    fn name(&self) -> &str {
        "render"
    }

    async fn call(&self, args: &Value, cx: JobContext<'_>) -> Result<Value, ToolError> {
        let pages = args
            .get("pages")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1);
        for page in 1..=pages {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Returns at once: the worker stores the latest report a few
            // times a second, and the last one always.
            cx.progress(
                page as f64 / pages as f64,
                &format!("page {page} of {pages}"),
            );
        }
        // The id is the same on every attempt: an idempotency key for
        // whatever the tool writes elsewhere.
        Ok(json!({"pages": pages, "job": cx.id(), "attempt": cx.attempt()}))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut own_redis = None;
    let redis_url = match std::env::var("TOOLQ_REDIS_URL") {
        Ok(url) => url,
        Err(_) => own_redis.insert(RedisServer::start()?).url(),
    };
    let queue = format!("progress-example-{}", std::process::id());

    let mut registry = Registry::with_builtins();
    registry.register(Render);
    let config = Config {
        redis_url: redis_url.clone(),
        queues: vec![queue.clone()],
        http_addr: "off".into(),
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(Worker::new(config, registry).run(shutdown.clone()));

    let producer = Producer::connect(&redis_url, None)?;
    let id = producer
        .enqueue(&queue, Job::new("render", json!({"pages": 5})))
        .await?;
    // What `toolq job show` and the gateway's GET /jobs/{id} read.
    let mut last = None;
    loop {
        let view = producer.job(&queue, &id).await?;
        if let Some(p) = view.progress.filter(|p| Some(p.fraction) != last) {
            println!("progress {}", p.line());
            last = Some(p.fraction);
        }
        if !matches!(view.state, JobState::Pending | JobState::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = producer.wait(&queue, &id, Duration::from_secs(30)).await?;
    println!("{}", serde_json::to_string(&result)?);

    shutdown.begin();
    worker.await??;
    Ok(())
}
