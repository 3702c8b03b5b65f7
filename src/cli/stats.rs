//! `toolq stats [--json]`: per queue (found by scanning Redis) the jobs
//! pending, active, delayed and dead, the live workers, and the totals.

use serde_json::json;

use crate::config::Config;
use crate::producer::{Producer, QueueStats};

use super::{CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq stats\n  \
    toolq stats --json | jq '.queues[] | {queue, pending, dead}'\n  \
    toolq stats --shards            # a sharded queue's shards one by one")]
pub struct StatsArgs {
    /// Print JSON: {"queues": [{queue, pending, active, delayed, dead, dead_bytes, dead_trimmed, paused, workers, totals, shard_count, shards_served}]}
    #[arg(long)]
    pub json: bool,
    /// Show each shard of a sharded queue (its numbers are the shards'
    /// added up); with --json, a `shards` array per sharded queue
    #[arg(long)]
    pub shards: bool,
}

pub async fn run(config: &Config, a: StatsArgs) -> Result<Exit, CliError> {
    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    let mut stats = producer.stats(config.heartbeat_timeout()).await?;
    if !a.shards {
        stats.iter_mut().for_each(|s| s.shards.clear());
    }
    if a.json {
        println!("{}", json!({ "queues": stats }));
    } else {
        print_table(&stats);
    }
    Ok(Exit::Success)
}

fn print_table(stats: &[QueueStats]) {
    if stats.is_empty() {
        println!("no queues in Redis yet");
        return;
    }
    let width = stats
        .iter()
        .map(|s| s.queue.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$}  {:>9} {:>7} {:>8} {:>7} {:>8}  {:>10} {:>9} {:>8} {:>9}  STATE",
        "QUEUE",
        "PENDING",
        "ACTIVE",
        "DELAYED",
        "DEAD",
        "WORKERS",
        "SUCCEEDED",
        "RETRYING",
        "DIED",
        "CANCELLED"
    );
    for s in stats {
        println!(
            "{:<width$}  {:>9} {:>7} {:>8} {:>7} {:>8}  {:>10} {:>9} {:>8} {:>9}  {}",
            super::safe(&s.queue),
            s.pending,
            s.active,
            s.delayed,
            s.dead,
            s.workers.len(),
            s.totals.succeeded,
            s.totals.retrying,
            s.totals.dead,
            s.totals.cancelled,
            if s.paused { "paused" } else { "running" }
        );
        for k in &s.shards {
            println!(
                "{:<width$}  {:>9} {:>7} {:>8} {:>7} {:>8}  {:>10} {:>9} {:>8} {:>9}  {}",
                format!("  #{}", k.shard),
                k.pending,
                k.active,
                k.delayed,
                k.dead,
                "",
                k.totals.succeeded,
                k.totals.retrying,
                k.totals.dead,
                k.totals.cancelled,
                match k.shard {
                    k if k >= s.shards_served => "retired",
                    k if k >= s.shard_count => "draining",
                    _ => "",
                }
            );
        }
    }
    let workers: Vec<_> = stats
        .iter()
        .flat_map(|s| s.workers.iter().map(move |w| (&s.queue, w)))
        .collect();
    if workers.is_empty() {
        return;
    }
    println!("\nLIVE WORKERS");
    for (queue, w) in workers {
        let info = w.info.as_ref();
        let field = |k: &str| {
            info.and_then(|i| i.get(k))
                .map(|v| v.to_string().trim_matches('"').to_owned())
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "  {}: {}  host {}  pid {}  concurrency {}  version {}",
            super::safe(queue),
            super::safe(&w.id),
            field("host"),
            field("pid"),
            field("concurrency"),
            field("version")
        );
    }
}
