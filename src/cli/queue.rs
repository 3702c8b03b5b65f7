//! `toolq queue pause|resume|delete|shards Q`.

use std::io::{BufRead, IsTerminal, Write};

use crate::config::Config;
use crate::producer::Producer;

use super::{ensure_reachable, queue_name, CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq queue pause emails      # workers stop taking its jobs within a second\n  \
    toolq queue resume emails\n  \
    toolq queue delete old-queue --yes\n  \
    toolq queue shards emails 8    # spread emails over 8 shards")]
pub struct QueueArgs {
    #[command(subcommand)]
    pub action: QueueAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueAction {
    /// Workers stop taking jobs from the queue (running jobs finish);
    /// producers can still enqueue
    #[command(after_help = "Example:\n  toolq queue pause emails")]
    Pause {
        /// The queue
        queue: String,
    },
    /// Workers take jobs from the queue again
    #[command(after_help = "Example:\n  toolq queue resume emails")]
    Resume {
        /// The queue
        queue: String,
    },
    /// Delete the queue and everything in it (pending, scheduled and dead
    /// jobs, results, totals); refused while live workers serve it
    #[command(after_help = "Examples:\n  \
        toolq queue delete old-queue          # asks for the name on a terminal\n  \
        toolq queue delete old-queue --yes")]
    Delete {
        /// The queue
        queue: String,
        /// Do not ask for confirmation (needed when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Show or set the queue's shard count. Raising it takes effect within
    /// about a second; lowering it retires shards, which drain first: run the same
    /// command again until it says the change is complete
    #[command(after_help = "Examples:\n  \
        toolq queue shards emails        # the current layout\n  \
        toolq queue shards emails 8      # producers and workers use 8 shards within a second\n  \
        toolq queue shards emails 2      # lower: shards 2..7 drain; repeat until complete")]
    Shards {
        /// The queue
        queue: String,
        /// The new shard count (1 to 256)
        count: Option<u32>,
    },
}

pub async fn run(config: &Config, args: QueueArgs) -> Result<Exit, CliError> {
    let producer = Producer::from_config(config)?;
    match args.action {
        QueueAction::Pause { queue } => {
            let queue = queue_name(&queue)?;
            ensure_reachable(producer.broker()).await?;
            producer.pause(&queue).await?;
            println!("paused queue {queue}: workers take no new job from it (running jobs finish)");
        }
        QueueAction::Resume { queue } => {
            let queue = queue_name(&queue)?;
            ensure_reachable(producer.broker()).await?;
            producer.resume(&queue).await?;
            println!("resumed queue {queue}");
        }
        QueueAction::Delete { queue, yes } => {
            let queue = queue_name(&queue)?;
            if !yes {
                confirm(&format!(
                    "This deletes queue `{queue}` and every job, result and dead job in it.\nType the queue name to confirm: "
                ), &queue)?;
            }
            ensure_reachable(producer.broker()).await?;
            let deleted = producer
                .delete_queue(&queue, config.heartbeat_timeout())
                .await?;
            println!("deleted queue {queue} ({deleted} keys)");
        }
        QueueAction::Shards { queue, count } => {
            let queue = queue_name(&queue)?;
            ensure_reachable(producer.broker()).await?;
            return shards(&producer, &queue, count).await;
        }
    }
    Ok(Exit::Success)
}

/// `toolq queue shards Q [N]`: exit 0 when the layout is as asked, 1 while
/// retired shards still drain (run it again).
async fn shards(producer: &Producer, queue: &str, count: Option<u32>) -> Result<Exit, CliError> {
    let Some(n) = count else {
        let s = producer.broker().shard_layout(queue).await?;
        println!("queue {queue}: {} shard(s)", s.count);
        if s.serve > s.count {
            println!(
                "shards {}..{} are retired and still served until they drain: run `toolq queue shards {queue} {}` again",
                s.count,
                s.serve - 1,
                s.count
            );
        }
        return Ok(Exit::Success);
    };
    let r = producer.set_shards(queue, n).await?;
    if r.complete() {
        println!(
            "queue {queue}: {} shard(s) (was {})",
            r.after.count, r.before.count
        );
        return Ok(Exit::Success);
    }
    println!(
        "queue {queue}: producers now use {} shard(s); shards {}..{} are retired and drain first:",
        r.after.count,
        r.after.count,
        r.after.serve - 1
    );
    for (k, pending, delayed, running, dead) in &r.draining {
        println!(
            "  shard {k}: {pending} pending, {delayed} delayed, {running} running, {dead} dead"
        );
    }
    println!(
        "run `toolq queue shards {queue} {n}` again once they are empty (dead jobs: `toolq dead retry --all --queue {queue}` or `toolq dead purge`)"
    );
    Ok(Exit::JobsFailed)
}

/// Asks on the terminal for `expected`; refuses when not on a terminal.
pub fn confirm(prompt: &str, expected: &str) -> Result<(), CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::BadInput(
            "refusing to delete without confirmation: pass --yes (stdin is not a terminal)".into(),
        ));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    if line.trim() != expected {
        return Err(CliError::BadInput(
            "not confirmed: nothing was deleted".into(),
        ));
    }
    Ok(())
}
