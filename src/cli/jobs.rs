//! `toolq jobs list`: the jobs of a queue in one state, a page at a time.

use crate::config::Config;
use crate::producer::{JobFilter, ListState, Producer};

use super::{ensure_reachable, queue_name, CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq jobs list --queue emails                       # pending, oldest first\n  \
    toolq jobs list --state running\n  \
    toolq jobs list --state dead --error-kind timeout --limit 50\n  \
    toolq jobs list --state scheduled --tool weather --json")]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: JobsAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobsAction {
    /// List jobs: pending (oldest first), scheduled (soonest first),
    /// running, or dead (newest first)
    #[command(after_help = "Examples:\n  \
        toolq jobs list --state dead --error-kind tool_error\n  \
        toolq jobs list --limit 20 --offset 40")]
    List {
        /// The queue to list
        #[arg(long, default_value = "default")]
        queue: String,
        /// Which jobs
        #[arg(long, value_enum, default_value = "pending")]
        state: ListState,
        /// Only jobs of this tool
        #[arg(long)]
        tool: Option<String>,
        /// Only dead jobs whose error has this kind (tool_error, timeout, invalid_args, ...)
        #[arg(long, value_name = "KIND")]
        error_kind: Option<String>,
        /// Most jobs to show; 0 shows them all
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Jobs to skip first (paging)
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// One JSON object per job, then none of the table
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, args: JobsArgs) -> Result<Exit, CliError> {
    let JobsAction::List {
        queue,
        state,
        tool,
        error_kind,
        limit,
        offset,
        json,
    } = args.action;
    let queue = queue_name(&queue)?;
    let producer = Producer::from_config(config)?;
    ensure_reachable(producer.broker()).await?;
    let filter = JobFilter {
        state,
        tool,
        error_kind,
        limit,
        offset,
    };
    let page = producer.list_jobs(&queue, &filter).await?;
    if json {
        for job in &page.jobs {
            println!("{}", serde_json::to_string(job).unwrap_or_default());
        }
        return Ok(Exit::Success);
    }
    let rows: Vec<[String; 6]> = page
        .jobs
        .iter()
        .map(|j| {
            [
                super::safe(j.id.as_deref().unwrap_or("-")),
                super::safe(j.tool.as_deref().unwrap_or("-")),
                j.state.to_string(),
                j.attempt.to_string(),
                j.at.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                // A dead job's error says more than the worker it died on.
                super::safe(
                    &j.error_kind
                        .as_ref()
                        .map(|k| format!("{k}: {}", j.error_message.as_deref().unwrap_or("")))
                        .or_else(|| j.worker.clone())
                        .unwrap_or_default(),
                ),
            ]
        })
        .collect();
    let header = [
        "ID",
        "TOOL",
        "STATE",
        "ATTEMPT",
        "AT (unix ms)",
        "WORKER / ERROR",
    ];
    print!("{}", super::table(&header, &rows));
    println!(
        "{} of {} {} job(s) in queue {queue}",
        page.jobs.len(),
        page.total,
        match state {
            ListState::Pending => "pending",
            ListState::Scheduled => "scheduled",
            ListState::Running => "running",
            ListState::Dead => "dead",
        }
    );
    Ok(Exit::Success)
}
