//! `toolq submit FILE|-`: validates every JSON line first (bad lines are
//! named `line N: <what>` and, unless `--skip-invalid`, nothing is
//! enqueued), enqueues in pipelined chunks, and with `--wait` streams each
//! result as it finishes (see `wait.rs`).

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::job::{FollowUp, ParseLimits};
use crate::producer::{
    read_lines, BatchOptions, Defaults, JobLines, Producer, ProducerError, Submitted,
};

use super::progress::Progress;
use super::{queue_name, CliError, Exit};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    echo '{\"tool\":\"calculator\",\"args\":{\"expression\":\"2+2\"}}' > jobs.jsonl\n  \
    toolq submit jobs.jsonl --queue default --wait\n  \
    toolq submit jobs.jsonl --dry-run          # check every line, enqueue nothing\n  \
    cat jobs.jsonl | toolq submit - --max-attempts 5 > ids.txt\n  \
    toolq submit jobs.jsonl --callback '{\"tool\":\"echo\",\"args\":{\"ok\":\"$batch.succeeded\",\"dead\":\"$batch.dead\"}}'")]
pub struct SubmitArgs {
    /// JSON-lines file, one job per line (`-` for stdin); blank lines and
    /// `#` comments are skipped
    pub file: PathBuf,
    /// Queue to submit to
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// Total tries for lines that do not set `max_attempts`
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// Per-attempt limit in ms for lines that do not set `timeout_ms`
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: Option<u64>,
    /// Wait for every job and print one result JSON per line, in completion
    /// order; stderr shows the count finished and, for batches of up to 100
    /// jobs, the latest progress a running job reported
    #[arg(long)]
    pub wait: bool,
    /// With --wait, print results in input order
    #[arg(long, requires = "wait")]
    pub ordered: bool,
    /// With --wait, the longest wait for the whole batch [default: no limit]
    #[arg(long, value_name = "SECS", value_parser = super::duration::parse, requires = "wait")]
    pub timeout: Option<Duration>,
    /// Validate only; enqueue nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Enqueue the valid lines and report the bad ones (which then do not
    /// change the exit code)
    #[arg(long)]
    pub skip_invalid: bool,
    /// Wait while the queue holds N or more pending jobs [config: max_pending]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending: Option<u64>,
    /// Longest a job's `unique_key` stays held, e.g. 1h [config: unique_ttl_s]
    #[arg(long, value_name = "DUR", value_parser = super::duration::parse)]
    pub unique_ttl: Option<Duration>,
    /// Skip checking tool names and arguments against the tool catalog
    /// that live workers publish
    #[arg(long)]
    pub no_check: bool,
    /// A job template enqueued once, when the batch's last job is settled;
    /// `"$batch.succeeded"`, `"$batch.dead"`, `"$batch.cancelled"`,
    /// `"$batch.total"` and `"$batch.id"` in its args become the values
    #[arg(long, value_name = "JSON", value_parser = parse_callback)]
    pub callback: Option<FollowUp>,
}

fn parse_callback(text: &str) -> Result<FollowUp, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    FollowUp::from_value(&value)
}

pub async fn run(config: &Config, a: SubmitArgs) -> Result<Exit, CliError> {
    let queue = queue_name(&a.queue)?;
    let lines = read_input(&a, config)?;
    for e in &lines.errors {
        eprintln!("{e}");
    }
    let bad = lines.errors.len();
    if bad > 0 && !a.skip_invalid {
        eprintln!(
            "toolq: {bad} invalid line(s); nothing enqueued (--skip-invalid enqueues the valid ones)"
        );
        return Ok(Exit::BadInput);
    }
    if lines.jobs.is_empty() {
        eprintln!("toolq: no jobs in the input");
        return Ok(if bad > 0 {
            Exit::BadInput
        } else {
            Exit::Success
        });
    }
    if a.dry_run {
        eprintln!(
            "toolq: {} valid job(s){}; nothing enqueued (--dry-run)",
            lines.jobs.len(),
            skipped_note(bad)
        );
        return Ok(Exit::Success);
    }

    let producer = Producer::from_config(config)?;
    producer.broker().check_reachable().await?;
    let mut lines = lines;
    if !a.no_check {
        if let Some(t) = &a.callback {
            let catalog = producer.catalog().await?;
            let unknown = t.tools("--callback").into_iter().find_map(|(at, tool)| {
                (!catalog.is_empty())
                    .then(|| {
                        catalog
                            .check_name(tool)
                            .err()
                            .map(|why| format!("`{at}`: {why}"))
                    })
                    .flatten()
            });
            if let Some(why) = unknown {
                eprintln!(
                    "toolq: {}; nothing enqueued (--no-check skips the check)",
                    super::safe(&why)
                );
                return Ok(Exit::BadInput);
            }
        }
        let refused = check_catalog(&producer, &mut lines).await?;
        if refused > 0 && !a.skip_invalid {
            eprintln!(
                "toolq: {refused} job(s) the tool catalog refuses; nothing enqueued (--no-check skips the check, --skip-invalid enqueues the rest)"
            );
            return Ok(Exit::BadInput);
        }
        if lines.jobs.is_empty() {
            return Ok(Exit::BadInput);
        }
    }
    let options = BatchOptions {
        awaitable: a.wait,
        unique_ttl: a
            .unique_ttl
            .unwrap_or(Duration::from_secs(config.unique_ttl_s)),
        max_pending: a
            .max_pending
            .or((config.max_pending > 0).then_some(config.max_pending)),
        callback: a.callback,
    };
    let started = Instant::now();
    let mut bar = Progress::submitting(lines.jobs.len());
    let submitted = producer
        .submit(&queue, lines.jobs, &options, &mut |n| {
            bar.update(n as u64, 0)
        })
        .await;
    bar.finish();
    let submitted = match submitted {
        Err(ProducerError::PartlyEnqueued(p)) => {
            // Exactly the jobs that went in, so a script can follow them
            // up and send the rest again.
            write_lines(&p.enqueued)?;
            return Err(ProducerError::PartlyEnqueued(p).into());
        }
        other => other?,
    };
    report_enqueued(&submitted, started.elapsed(), bad);
    if let Some(id) = &submitted.callback {
        eprintln!("toolq: batch callback {id} is enqueued when the last job is settled");
    }
    if a.wait {
        return super::wait::run(&producer, &submitted, a.ordered, a.timeout).await;
    }
    print_ids(&submitted)?;
    Ok(Exit::Success)
}

/// Drops (and reports, by line) the jobs the live workers' tool catalog
/// refuses: an unknown tool, or arguments failing its schema. Checks nothing
/// when no worker has published a catalog. Returns how many were dropped.
async fn check_catalog(producer: &Producer, lines: &mut JobLines) -> Result<usize, CliError> {
    let catalog = producer.catalog().await?;
    if catalog.is_empty() {
        return Ok(0);
    }
    let jobs = std::mem::take(&mut lines.jobs);
    let numbers = std::mem::take(&mut lines.line_numbers);
    let mut refused = 0;
    for (job, line) in jobs.into_iter().zip(numbers) {
        let follow_ups = job
            .follow_up_tools()
            .into_iter()
            .try_for_each(|(at, tool)| {
                catalog
                    .check_name(&tool)
                    .map_err(|why| format!("`{at}`: {why}"))
            });
        match catalog.check(job.tool(), job.args()).and(follow_ups) {
            Ok(()) => {
                lines.jobs.push(job);
                lines.line_numbers.push(line);
            }
            Err(why) => {
                eprintln!("line {line}: {}", super::safe(&why));
                refused += 1;
            }
        }
    }
    Ok(refused)
}

fn read_input(a: &SubmitArgs, config: &Config) -> Result<JobLines, CliError> {
    let defaults = Defaults {
        max_attempts: a.max_attempts,
        timeout_ms: a.timeout_ms,
    };
    let limits = ParseLimits {
        max_bytes: config.max_payload_bytes,
        max_depth: config.max_json_depth,
    };
    let read = if a.file.as_os_str() == "-" {
        read_lines(std::io::stdin().lock(), &defaults, limits)
    } else {
        std::fs::File::open(&a.file).and_then(|f| read_lines(BufReader::new(f), &defaults, limits))
    };
    read.map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", a.file.display())))
}

fn report_enqueued(s: &Submitted, took: Duration, bad: usize) {
    let n = s.enqueued();
    let rate = n as f64 / took.as_secs_f64().max(1e-6);
    let mut line = format!(
        "toolq: enqueued {n} job(s) to queue {} in {:.2} s ({rate:.0} jobs/s)",
        s.queue,
        took.as_secs_f64()
    );
    if !s.duplicates.is_empty() {
        line += &format!("; {} skipped as duplicates", s.duplicates.len());
    }
    eprintln!("{line}{}", skipped_note(bad));
}

fn skipped_note(bad: usize) -> String {
    match bad {
        0 => String::new(),
        n => format!("; {n} invalid line(s) skipped"),
    }
}

/// Without `--wait`, the ids of the enqueued jobs, so a script can fetch
/// their results later.
fn print_ids(s: &Submitted) -> Result<(), CliError> {
    let mut dup = s.duplicates.iter().peekable();
    let ids: Vec<&String> = s
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let skip = dup.peek() == Some(&i);
            if skip {
                dup.next();
            }
            !skip
        })
        .map(|(_, id)| id)
        .collect();
    write_lines(&ids)
}

/// One line per id on stdout.
fn write_lines(ids: &[impl AsRef<str>]) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for id in ids {
        writeln!(out, "{}", id.as_ref()).map_err(|e| CliError::Failed(format!("stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| CliError::Failed(format!("stdout: {e}")))
}
