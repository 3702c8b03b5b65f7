//! `toolq demo`: a newcomer's first run. Uses the configured Redis, or starts
//! a throw-away `redis-server` when none answers; runs a worker in this
//! process, submits sample jobs (good and bad), prints their results and
//! cleans up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Config;
use crate::job::Job;
use crate::producer::Producer;
use crate::queue::{Broker, QueueKeys, RedisTarget};
use crate::redis_server::RedisServer;
use crate::worker::Shutdown;

use super::{CliError, Exit};

const QUEUE: &str = "demo";
const WAIT: Duration = Duration::from_secs(30);

pub async fn run(mut config: Config) -> Result<Exit, CliError> {
    let _server = match reachable(&config).await {
        true => {
            println!(
                "Using Redis at {}",
                crate::spec::mask_url(&config.redis_url)
            );
            None
        }
        false => {
            println!(
                "No Redis answers at {}; starting a throw-away redis-server…",
                crate::spec::mask_url(&config.redis_url)
            );
            let server = tokio::task::spawn_blocking(RedisServer::start)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?
                .map_err(|e| CliError::RedisDown(e.to_string()))?;
            config.redis_url = server.url();
            println!(
                "Started redis-server on port {} (stopped when the demo ends)",
                server.port()
            );
            Some(server)
        }
    };
    config.queues = vec![QUEUE.into()];
    config.http_addr = "off".into();
    config.backoff_base_ms = 200;
    config.backoff_max_ms = 1000;

    let shutdown = Shutdown::new();
    let worker = super::worker::build(config.clone())?;
    let worker = tokio::spawn(worker.run(shutdown.clone()));
    let outcome = submit_and_print(&config).await;
    shutdown.force();
    let _ = worker.await;
    outcome
}

async fn reachable(config: &Config) -> bool {
    let Ok(target) = RedisTarget::open(
        &config.redis_url,
        config.redis_ca_file.as_deref(),
        &config.redis_cluster_nodes,
    ) else {
        return false;
    };
    let Ok(broker) = Broker::new(target) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), broker.ping()).await,
        Ok(Ok(_))
    )
}

fn samples() -> Vec<(&'static str, Job)> {
    let mut flaky = Job::new("fail", json!({"times": 1}));
    flaky.max_attempts = Some(3);
    vec![
        (
            "arithmetic",
            Job::new("calculator", json!({"expression": "2*(3+4)"})),
        ),
        (
            "functions",
            Job::new(
                "calculator",
                json!({"expression": "sqrt(16) + 2^10 - max(1, 7)"}),
            ),
        ),
        (
            "the seed's form",
            Job::new("calculator", json!({"operation": "add", "a": 1, "b": 2})),
        ),
        ("echo", Job::new("echo", json!({"hello": "world"}))),
        ("fails once, then succeeds", flaky),
        (
            "division by zero",
            Job::new("calculator", json!({"expression": "1/0"})),
        ),
        ("unknown tool", Job::new("no-such-tool", json!({}))),
    ]
}

async fn submit_and_print(config: &Config) -> Result<Exit, CliError> {
    let producer = Producer::from_config(config)?;
    let keys = QueueKeys::new(QUEUE);
    let samples = samples();
    let mut ids = Vec::new();
    for (_, job) in &samples {
        ids.push(producer.enqueue(QUEUE, job.clone()).await?);
    }
    // A payload that is not JSON at all, as any Redis client could push it.
    producer
        .broker()
        .enqueue(&keys, "{this is not json")
        .await?;
    println!(
        "\nSubmitted {} jobs to queue `{QUEUE}`; results:\n",
        samples.len() + 1
    );

    let mut all_as_expected = true;
    for ((label, job), id) in samples.iter().zip(&ids) {
        match producer.wait(QUEUE, id, WAIT).await {
            Ok(r) => {
                let detail = match (&r.output, &r.error) {
                    (Some(out), _) => format!("output {out}"),
                    (_, Some(err)) => format!("error {}: {}", err.kind, err.message),
                    _ => String::new(),
                };
                println!(
                    "  {label:<26} {tool:<12} {status:<9} attempts {attempts}  {detail}",
                    tool = job.tool,
                    status = r.status,
                    attempts = r.attempts
                );
            }
            Err(e) => {
                all_as_expected = false;
                println!("  {label:<26} {:<12} no result: {e}", job.tool);
            }
        }
    }
    let dead: Vec<String> = producer
        .broker()
        .query(
            "dead",
            redis::cmd("ZRANGE").arg(&keys.dead).arg(-20).arg(-1),
        )
        .await?;
    // The raw payload is kept as a string: that is how to spot it.
    let raw = dead
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .rfind(|entry| entry["job"].is_string());
    if let Some(entry) = raw {
        println!(
            "  {:<26} {:<12} {:<9} error {}: {}",
            "not JSON at all",
            "-",
            "dead",
            entry["error"]["kind"].as_str().unwrap_or("?"),
            entry["error"]["message"].as_str().unwrap_or("?")
        );
    }
    println!("\nBad jobs end in the dead set with a clear error; the worker keeps going.");
    println!("Try: toolq enqueue calculator '{{\"expression\":\"(1+2)*3\"}}' --wait  (with a worker running)");
    Ok(if all_as_expected {
        Exit::Success
    } else {
        Exit::JobsFailed
    })
}
