//! `toolq dead list|retry|purge`: look at dead jobs, put them back on
//! `pending` with their attempts reset (once the cause is fixed), or drop
//! them.

use std::time::Duration;

use crate::config::Config;
use crate::producer::{DeadEntry, DeadList, Producer};

use super::{queue_name, CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    toolq dead list --queue emails\n  \
    toolq dead retry 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --queue emails\n  \
    toolq dead purge --older-than 7d --queue emails")]
pub struct DeadArgs {
    /// Queue whose dead jobs to act on
    #[arg(long, default_value = "default", global = true)]
    pub queue: String,
    #[command(subcommand)]
    pub action: DeadAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeadAction {
    /// The newest dead jobs, newest first, with how many the queue holds
    #[command(after_help = "Examples:\n  \
        toolq dead list --queue emails\n  \
        toolq dead list --limit 0              # every dead job\n  \
        toolq dead list --json | jq -r '.error.message'")]
    List {
        /// Most dead jobs to show, newest first; 0 shows them all
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// One dead entry JSON per line, as stored
        #[arg(long)]
        json: bool,
    },
    /// Put a dead job (or all) back on pending, attempts reset to 0
    #[command(after_help = "Examples:\n  \
        toolq dead retry 0190c3a2-7f7e-7b1a-9f3e-2d5c1e0a4b6d --queue emails\n  \
        toolq dead retry --all --queue emails")]
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
    #[command(after_help = "Examples:\n  \
        toolq dead purge --older-than 7d --queue emails\n  \
        toolq dead purge --queue emails        # every dead job")]
    Purge {
        /// Remove only jobs that died longer ago than this (30s, 15m, 12h,
        /// 7d) [default: all of them]
        #[arg(long, value_name = "DUR", value_parser = super::duration::parse)]
        older_than: Option<Duration>,
        /// Do not ask for confirmation (needed when not on a terminal)
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(config: &Config, a: DeadArgs) -> Result<Exit, CliError> {
    let queue = queue_name(&a.queue)?;
    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    let unique_ttl = Duration::from_secs(config.unique_ttl_s);
    match a.action {
        DeadAction::List { limit, json } => {
            let list = producer
                .dead_list(&queue, (limit > 0).then_some(limit))
                .await?;
            if json {
                for e in &list.entries {
                    println!("{}", e.raw);
                }
            } else {
                print!("{}", table(&queue, &list, crate::job::now_ms()));
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
        DeadAction::Purge { older_than, yes } => {
            if !yes {
                let which = match older_than {
                    Some(d) => format!("the dead jobs older than {d:?}"),
                    None => "every dead job".to_owned(),
                };
                super::queue::confirm(
                    &format!("This deletes {which} of queue `{queue}`.\nType the queue name to confirm: "),
                    &queue,
                )?;
            }
            let n = producer.dead_purge(&queue, older_than).await?;
            println!("purged {n} dead job(s) from queue {queue}");
            Ok(Exit::Success)
        }
    }
}

/// Longest error message a table row shows (`--json` has all of it).
const MESSAGE_WIDTH: usize = 100;

/// The listing as a table: a header, one aligned row per dead job, and a
/// closing line with the queue's total.
fn table(queue: &str, list: &DeadList, now_ms: u64) -> String {
    if list.total == 0 {
        return format!("no dead jobs in queue {queue}\n");
    }
    let rows: Vec<[String; 5]> = list.entries.iter().map(|e| row(e, now_ms)).collect();
    let header = ["DIED", "ID", "TOOL", "ATTEMPTS", "ERROR"].map(String::from);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
    let mut out = String::new();
    for r in [&header].into_iter().chain(&rows) {
        let line = format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
            r[0], r[1], r[2], r[3], r[4]
        );
        out += line.trim_end();
        out.push('\n');
    }
    let shown = list.entries.len() as u64;
    out += &if shown < list.total {
        format!(
            "{shown} of {} dead jobs in queue {queue}, newest first (--limit 0 lists all)\n",
            list.total
        )
    } else {
        format!("{} dead job(s) in queue {queue}\n", list.total)
    };
    out
}

/// One dead job's cells: how long ago it died, id, tool, attempts made, and
/// `kind: message` cut to one line.
fn row(e: &DeadEntry, now_ms: u64) -> [String; 5] {
    let died = e
        .died_at
        .map(|t| format!("{} ago", age(now_ms.saturating_sub(t))))
        .unwrap_or_else(|| "?".into());
    let message = e.error_message.as_deref().unwrap_or("?");
    let mut message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_WIDTH)
        .collect();
    if e.error_message.as_deref().map_or(0, |m| m.chars().count()) > MESSAGE_WIDTH {
        message.push('…');
    }
    [
        died,
        e.id.as_deref()
            .map_or("(no id: not a valid job)".into(), super::safe),
        e.tool.as_deref().map_or("-".into(), super::safe),
        e.attempt
            .map_or("?".into(), |a| a.saturating_add(1).to_string()),
        format!(
            "{}: {message}",
            super::safe(e.error_kind.as_deref().unwrap_or("?"))
        ),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, tool: &str, died_at: u64, message: &str) -> DeadEntry {
        DeadEntry {
            raw: String::new(),
            id: Some(id.into()),
            tool: Some(tool.into()),
            attempt: Some(2),
            error_kind: Some("permanent".into()),
            error_message: Some(message.into()),
            died_at: Some(died_at),
        }
    }

    #[test]
    fn a_header_aligned_rows_and_the_total() {
        let list = DeadList {
            total: 630,
            entries: vec![
                entry("a", "calculator", 9_995_000, "division by zero"),
                entry("job-long-id", "echo", 10_000_000 - 7_200_000, "bad\nline"),
            ],
        };
        let text = table("q", &list, 10_000_000);
        let expected = [
            "  DIED  ID           TOOL        ATTEMPTS  ERROR",
            "5s ago  a            calculator         3  permanent: division by zero",
            "2h ago  job-long-id  echo               3  permanent: bad line",
            "2 of 630 dead jobs in queue q, newest first (--limit 0 lists all)",
        ];
        assert_eq!(text, expected.join("\n") + "\n");
    }

    #[test]
    fn ids_and_tools_cannot_drive_the_terminal() {
        let e = entry("a\n2026 INFO forged", "\u{1b}[2Jcalc", 0, "m");
        let [_, id, tool, _, _] = row(&e, 0);
        assert_eq!(id, "a\\n2026 INFO forged");
        assert_eq!(tool, "\\u{1b}[2Jcalc");
    }

    #[test]
    fn every_job_shown_says_so_and_none_says_none() {
        let list = DeadList {
            total: 1,
            entries: vec![entry("a", "echo", 0, &"x".repeat(150))],
        };
        let text = table("q", &list, 0);
        assert!(text.ends_with("1 dead job(s) in queue q\n"), "{text}");
        assert!(text.contains(&format!("{}…", "x".repeat(MESSAGE_WIDTH))));
        let empty = DeadList {
            total: 0,
            entries: vec![],
        };
        assert_eq!(table("q", &empty, 0), "no dead jobs in queue q\n");
    }
}
