//! `toolq job show|cancel ID`: one job by id, wherever it is.

use std::time::Duration;

use crate::config::Config;
use crate::producer::{CancelOutcome, JobState, JobView, Producer};

use super::{ensure_reachable, queue_name, CliError, Exit};

/// How long `job cancel` waits for a running job's worker to stop it.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq job show 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --queue emails\n  \
    toolq job cancel 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --queue emails")]
pub struct JobArgs {
    /// The job's queue
    #[arg(long, default_value = "default", global = true)]
    pub queue: String,
    #[command(subcommand)]
    pub action: JobAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobAction {
    /// Where the job is (pending, scheduled, running, retrying, succeeded,
    /// dead, cancelled or unknown), its payload, result, error, attempts and
    /// the progress its tool last reported
    #[command(after_help = "Examples:\n  \
        toolq job show 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d\n  \
        toolq job show 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --json | jq .state")]
    Show {
        /// The job id
        id: String,
        /// Print the whole record as JSON
        #[arg(long)]
        json: bool,
    },
    /// Cancel the job: a pending or scheduled job never runs; a running
    /// job's call is stopped and it ends `cancelled`
    #[command(after_help = "Examples:\n  \
        toolq job cancel 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --queue emails")]
    Cancel {
        /// The job id
        id: String,
    },
}

pub async fn run(config: &Config, args: JobArgs) -> Result<Exit, CliError> {
    let queue = queue_name(&args.queue)?;
    let producer = Producer::from_config(config)?;
    ensure_reachable(producer.broker()).await?;
    match args.action {
        JobAction::Show { id, json } => {
            let view = producer.job(&queue, &id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else {
                print!("{}", describe(&view));
            }
            Ok(match view.state {
                JobState::Unknown => Exit::JobsFailed,
                _ => Exit::Success,
            })
        }
        JobAction::Cancel { id } => {
            let (outcome, view) = producer.cancel_and_wait(&queue, &id, CANCEL_WAIT).await?;
            match outcome {
                CancelOutcome::Removed(was) => {
                    println!("cancelled job {id}: it was {was} and will never run");
                    Ok(Exit::Success)
                }
                CancelOutcome::Requested if view.state == JobState::Cancelled => {
                    println!("cancelled job {id}: its call was stopped");
                    Ok(Exit::Success)
                }
                CancelOutcome::Requested => {
                    println!(
                        "asked the worker running job {id} to stop it; it is {} now",
                        view.state
                    );
                    Ok(Exit::Success)
                }
                CancelOutcome::Finished(state) => Err(CliError::Failed(format!(
                    "job {id} already finished: {state}"
                ))),
                CancelOutcome::Unknown => Err(CliError::Failed(format!(
                    "no job {id} in queue {queue} (unknown id, or its result expired)"
                ))),
            }
        }
    }
}

/// The human view: one `field: value` line each, then the documents.
fn describe(v: &JobView) -> String {
    let mut out = format!(
        "job      {}\nqueue    {}\nstate    {}\n",
        v.id, v.queue, v.state
    );
    let tool = v
        .payload
        .as_ref()
        .and_then(|p| p["tool"].as_str())
        .or_else(|| v.result.as_ref().and_then(|r| r["tool"].as_str()));
    if let Some(tool) = tool {
        out.push_str(&format!("tool     {}\n", super::safe(tool)));
    }
    if let Some(a) = v.attempts {
        out.push_str(&format!("attempts {a}\n"));
    }
    if let Some(w) = &v.worker {
        out.push_str(&format!("worker   {}\n", super::safe(w)));
    }
    if let Some(at) = v.due_at {
        out.push_str(&format!("due      {} (unix ms)\n", at));
    }
    if let Some(at) = v.died_at {
        out.push_str(&format!("died     {} (unix ms)\n", at));
    }
    if let Some(p) = &v.progress {
        out.push_str(&format!(
            "progress {} (attempt {})\n",
            super::safe(&p.line()),
            p.attempt
        ));
    }
    if let Some(e) = &v.error {
        out.push_str(&format!(
            "error    {}: {}\n",
            super::safe(e["kind"].as_str().unwrap_or("")),
            super::safe(e["message"].as_str().unwrap_or(""))
        ));
    }
    if let Some(p) = &v.payload {
        out.push_str(&format!("payload  {p}\n"));
    }
    if let Some(r) = &v.result {
        out.push_str(&format!("result   {r}\n"));
    }
    out
}
