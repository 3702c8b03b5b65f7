//! `toolq dead list|retry|purge`: look at dead jobs, put them back on
//! `pending` with their attempts reset (once the cause is fixed), or drop
//! them.

use std::time::Duration;

use crate::config::Config;
use crate::producer::{DeadEntry, Producer};

use super::{ensure_reachable, queue_name, CliError, Exit};

#[derive(Debug, clap::Args)]
pub struct DeadArgs {
    /// Queue whose dead jobs to act on
    #[arg(long, default_value = "default", global = true)]
    pub queue: String,
    #[command(subcommand)]
    pub action: DeadAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadAction {
    /// The newest dead jobs, newest first
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One dead entry JSON per line, as stored
        #[arg(long)]
        json: bool,
    },
    /// Put a dead job (or all) back on pending, attempts reset to 0
    Retry {
        /// Id of the dead job
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every dead job of the queue (raw payloads that were never valid
        /// jobs stay)
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Remove dead jobs (all, or those older than DUR, e.g. 7d)
    Purge {
        #[arg(long, value_name = "DUR", value_parser = super::duration::parse)]
        older_than: Option<Duration>,
    },
}

pub async fn run(config: &Config, a: DeadArgs) -> Result<Exit, CliError> {
    let queue = queue_name(&a.queue)?;
    let producer = Producer::connect(&config.redis_url, config.redis_ca_file.as_deref())?;
    ensure_reachable(producer.broker()).await?;
    let unique_ttl = Duration::from_secs(config.unique_ttl_s);
    match a.action {
        DeadAction::List { limit, json } => {
            let entries = producer.dead_list(&queue, limit).await?;
            if json {
                for e in &entries {
                    println!("{}", e.raw);
                }
            } else {
                print_list(&queue, &entries);
            }
            Ok(Exit::Success)
        }
        DeadAction::Retry { all: true, .. } => {
            let r = producer.dead_retry_all(&queue, unique_ttl).await?;
            let mut line = format!("retried {} dead job(s) in queue {queue}", r.retried);
            if r.not_retryable > 0 {
                line += &format!(
                    "; {} left: not valid jobs (raw payloads), cannot run again",
                    r.not_retryable
                );
            }
            println!("{line}");
            Ok(Exit::Success)
        }
        DeadAction::Retry { id, .. } => {
            let id = id.unwrap_or_default();
            if producer.dead_retry(&queue, &id, unique_ttl).await? {
                println!("retried {id}: back on pending in queue {queue}");
                Ok(Exit::Success)
            } else {
                Err(CliError::Failed(format!(
                    "no dead job with id {id} in queue {queue}"
                )))
            }
        }
        DeadAction::Purge { older_than } => {
            let n = producer.dead_purge(&queue, older_than).await?;
            println!("purged {n} dead job(s) from queue {queue}");
            Ok(Exit::Success)
        }
    }
}

fn print_list(queue: &str, entries: &[DeadEntry]) {
    if entries.is_empty() {
        println!("no dead jobs in queue {queue}");
        return;
    }
    let now = crate::job::now_ms();
    for e in entries {
        let age = e
            .died_at
            .map(|t| age(now.saturating_sub(t)))
            .unwrap_or_else(|| "?".into());
        println!(
            "{age:>8} ago  {}  {}  attempts {}  {}: {}",
            e.id.as_deref().unwrap_or("(no id: not a valid job)"),
            e.tool.as_deref().unwrap_or("-"),
            e.attempt.map_or("?".into(), |a| (a + 1).to_string()),
            e.error_kind.as_deref().unwrap_or("?"),
            e.error_message.as_deref().unwrap_or("?")
        );
    }
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
