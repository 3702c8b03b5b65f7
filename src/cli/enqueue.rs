//! `toolq enqueue TOOL ARGS_JSON`: one job; prints its id, or its result
//! with `--wait`.

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::job::Job;
use crate::producer::{Producer, ProducerError};

use super::{ensure_reachable, CliError, Exit};

pub struct EnqueueArgs {
    pub tool: String,
    pub args: String,
    pub queue: String,
    pub wait: bool,
    pub timeout: Duration,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
}

pub async fn run(config: &Config, a: EnqueueArgs) -> Result<Exit, CliError> {
    let args: Value = serde_json::from_str(&a.args)
        .map_err(|e| CliError::BadInput(format!("ARGS_JSON is not valid JSON: {e}")))?;
    if !args.is_object() {
        return Err(CliError::BadInput("ARGS_JSON must be a JSON object".into()));
    }
    crate::worker::QueueSpec::parse(&a.queue).map_err(CliError::BadInput)?;
    let producer = Producer::connect(&config.redis_url, config.redis_ca_file.as_deref())?;
    ensure_reachable(producer.broker()).await?;
    let mut job = Job::new(a.tool, args);
    job.max_attempts = a.max_attempts;
    job.timeout_ms = a.timeout_ms;
    let id = producer.enqueue(&a.queue, job).await?;
    if !a.wait {
        println!("{id}");
        return Ok(Exit::Success);
    }
    match producer.wait(&a.queue, &id, a.timeout).await {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            Ok(if result.status == "succeeded" {
                Exit::Success
            } else {
                Exit::JobsFailed
            })
        }
        Err(ProducerError::Timeout { .. }) => {
            eprintln!("job {id}: no result within {} s", a.timeout.as_secs());
            Ok(Exit::JobsFailed)
        }
        Err(e) => Err(e.into()),
    }
}
