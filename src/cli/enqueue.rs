//! `toolq enqueue TOOL ARGS_JSON`: one job; prints its id, or its result
//! with `--wait` (woken by the worker's notification, not by polling).

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::job::Job;
use crate::producer::{BatchOptions, Producer, ProducerError};

use super::{queue_name, CliError, Exit};

pub struct EnqueueArgs {
    pub tool: String,
    pub args: String,
    pub queue: String,
    pub wait: bool,
    pub timeout: Duration,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    /// Skip the check against the tool catalog.
    pub no_check: bool,
}

pub async fn run(config: &Config, a: EnqueueArgs) -> Result<Exit, CliError> {
    let args: Value = serde_json::from_str(&a.args)
        .map_err(|e| CliError::BadInput(format!("ARGS_JSON is not valid JSON: {e}")))?;
    if !args.is_object() {
        return Err(CliError::BadInput("ARGS_JSON must be a JSON object".into()));
    }
    let queue = queue_name(&a.queue)?;
    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    if !a.no_check {
        let catalog = producer.catalog().await?;
        if !catalog.is_empty() {
            catalog
                .check(&a.tool, &args)
                .map_err(|why| CliError::BadInput(format!("{why} (--no-check enqueues anyway)")))?;
        }
    }
    let mut job = Job::new(a.tool, args);
    job.max_attempts = a.max_attempts;
    job.timeout_ms = a.timeout_ms;
    let options = BatchOptions {
        awaitable: a.wait,
        unique_ttl: Duration::from_secs(config.unique_ttl_s),
        max_pending: (config.max_pending > 0).then_some(config.max_pending),
        callback: None,
    };
    if !a.wait {
        let submitted = producer
            .enqueue_batch(&queue, std::slice::from_ref(&job), &options)
            .await?;
        println!("{}", submitted.ids.first().map_or("", String::as_str));
        return Ok(Exit::Success);
    }
    match producer
        .enqueue_and_wait(&queue, job, &options, a.timeout)
        .await
    {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            Ok(if result.status == "succeeded" {
                Exit::Success
            } else {
                Exit::JobsFailed
            })
        }
        Err(ProducerError::Timeout { id, .. }) => {
            eprintln!("job {id}: no result within {} s", a.timeout.as_secs());
            Ok(Exit::JobsFailed)
        }
        Err(e) => Err(e.into()),
    }
}
