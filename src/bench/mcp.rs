//! `toolq bench --mcp CMD --mcp-tool T --mcp-args JSON`: what the queue
//! costs an MCP tool call. The same server is called directly by an `rmcp`
//! client at the same concurrency, then through a worker (every call a
//! durable job: fetched, validated, run, its result written to Redis) with
//! `instances` = 1, 2 and 4 processes of the server.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::Value;

use super::BenchError;
use crate::config::Config;
use crate::job::Job;
use crate::producer::{BatchOptions, Producer};
use crate::queue::QueueKeys;
use crate::tools::mcp::{McpConfig, McpServerConfig};
use crate::tools::Registry;
use crate::worker::{Shutdown, Worker};

/// What to call and how much.
#[derive(Debug, Clone)]
pub struct McpBench {
    pub command: Vec<String>,
    pub tool: String,
    pub args: Value,
    pub calls: usize,
    pub concurrency: usize,
}

const QUEUE: &str = "bench-mcp";
/// The server's name in the worker's configuration.
const SERVER: &str = "bench";

pub async fn run(b: &McpBench, producer: &Producer, url: &str) -> Result<(), BenchError> {
    println!(
        "mcp      {} calls of `{}` at concurrency {}, server: {}",
        b.calls,
        b.tool,
        b.concurrency,
        b.command.join(" ")
    );
    let direct = direct(b).await?;
    println!("         direct rmcp client           {direct:>8.0} calls/s");
    for instances in [1, 2, 4] {
        let queued = queued(b, producer, url, instances).await?;
        println!(
            "         through toolq, instances={instances}  {queued:>8.0} calls/s   = {:.2}x direct",
            queued / direct
        );
    }
    Ok(())
}

/// Calls per second of one client calling the server itself.
async fn direct(b: &McpBench) -> Result<f64, BenchError> {
    let mut cmd = tokio::process::Command::new(&b.command[0]);
    cmd.args(&b.command[1..]);
    let transport = TokioChildProcess::new(cmd).map_err(|e| BenchError::Spawn(e.to_string()))?;
    let client = ()
        .serve(transport)
        .await
        .map_err(|e| BenchError::Spawn(format!("MCP server: {e}")))?;
    let params = || {
        let mut p = CallToolRequestParams::new(b.tool.clone());
        if let Value::Object(map) = &b.args {
            p = p.with_arguments(map.clone());
        }
        p
    };
    for _ in 0..50 {
        client
            .call_tool(params())
            .await
            .map_err(|e| BenchError::Incomplete(format!("warm-up call failed: {e}")))?;
    }
    let start = Instant::now();
    let failed = stream::iter(0..b.calls)
        .map(|_| client.call_tool(params()))
        .buffer_unordered(b.concurrency)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    let rate = b.calls as f64 / start.elapsed().as_secs_f64();
    let _ = client.cancel().await;
    if failed > 0 {
        return Err(BenchError::Incomplete(format!(
            "{failed} direct calls failed"
        )));
    }
    Ok(rate)
}

/// Jobs per second through a worker serving `instances` processes, from
/// its first finished job to its last (server start-up left out).
async fn queued(
    b: &McpBench,
    producer: &Producer,
    url: &str,
    instances: usize,
) -> Result<f64, BenchError> {
    let keys = QueueKeys::new(QUEUE);
    producer
        .broker()
        .query::<()>(
            "bench",
            redis::cmd("DEL").arg(&keys.stats).arg(&keys.pending),
        )
        .await?;
    let tool = format!("{SERVER}.{}", b.tool);
    let jobs: Vec<Job> = (0..b.calls)
        .map(|_| {
            let mut j = Job::new(tool.clone(), b.args.clone());
            j.result_ttl_s = Some(60);
            j
        })
        .collect();
    let options = BatchOptions {
        awaitable: false,
        unique_ttl: Duration::from_secs(60),
        max_pending: None,
        callback: None,
    };
    producer.enqueue_batch(QUEUE, &jobs, &options).await?;
    let server = McpServerConfig {
        command: b.command.clone(),
        instances,
        max_concurrency: b.concurrency,
        ..Default::default()
    };
    let config = Config {
        redis_url: url.to_owned(),
        queues: vec![QUEUE.to_owned()],
        concurrency: b.concurrency,
        http_addr: "off".into(),
        mcp: McpConfig {
            servers: [(SERVER.to_owned(), server)].into_iter().collect(),
        },
        ..Config::default()
    };
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(Worker::new(config, Registry::with_builtins()).run(shutdown.clone()));
    let succeeded = || async {
        producer
            .broker()
            .query::<Option<u64>>(
                "bench",
                redis::cmd("HGET").arg(&keys.stats).arg("succeeded"),
            )
            .await
            .map(|n| n.unwrap_or(0))
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut t0) = (0, None);
    loop {
        let done = succeeded().await?;
        if t0.is_none() && done > 0 {
            (first, t0) = (done, Some(Instant::now()));
        }
        if done >= b.calls as u64 {
            break;
        }
        if Instant::now() > deadline {
            shutdown.begin();
            return Err(BenchError::Timeout(Duration::from_secs(600)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t0.map(|t| t.elapsed()).unwrap_or_default();
    shutdown.begin();
    let _ = worker.await;
    Ok((b.calls as u64 - first) as f64 / elapsed.as_secs_f64().max(1e-6))
}
