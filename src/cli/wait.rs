//! `toolq submit --wait`: prints each job's result JSON as it finishes (or
//! in input order with `--ordered`), then a summary on stderr. Exit 0 when
//! every job succeeded, 1 when some are dead or did not finish in time.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::producer::{Finished, Producer, ProducerError, Submitted};

use super::progress::Progress;
use super::{CliError, Exit};

/// Unfinished ids named in the summary; the rest are counted.
const NAME_UNFINISHED: usize = 10;

#[derive(Default)]
struct Tally {
    succeeded: usize,
    dead: usize,
    no_result: usize,
}

pub async fn run(
    producer: &Producer,
    submitted: &Submitted,
    ordered: bool,
    timeout: Option<Duration>,
) -> Result<Exit, CliError> {
    let mut waiter = producer.await_batch(submitted, timeout)?;
    let mut bar = Progress::waiting(submitted.enqueued());
    let watcher = super::watch::spawn(producer, submitted, bar.jobs());
    let mut out = Printer::new(submitted, ordered);
    let mut tally = Tally::default();
    let mut timed_out = None;
    while let Some(next) = waiter.next().await {
        let f = match next {
            Ok(f) => f,
            Err(ProducerError::BatchTimeout { waited, .. }) => {
                timed_out = Some(waited);
                continue;
            }
            Err(e) => {
                watcher.inspect(|w| w.abort());
                bar.finish();
                return Err(e.into());
            }
        };
        match (&f.result, f.succeeded()) {
            (None, _) => tally.no_result += 1,
            (Some(_), true) => tally.succeeded += 1,
            (Some(_), false) => tally.dead += 1,
        }
        let not_ok = tally.dead + tally.no_result;
        bar.update((tally.succeeded + not_ok) as u64, not_ok as u64);
        out.push(f)?;
    }
    watcher.inspect(|w| w.abort());
    out.rest()?;
    bar.finish();
    let unfinished = waiter.unfinished_ids();
    summarise(&tally, &unfinished, timed_out);
    Ok(
        if tally.dead == 0 && tally.no_result == 0 && unfinished.is_empty() {
            Exit::Success
        } else {
            Exit::JobsFailed
        },
    )
}

fn summarise(t: &Tally, unfinished: &[String], timed_out: Option<Duration>) {
    let mut line = format!("toolq: {} succeeded, {} dead", t.succeeded, t.dead);
    if t.no_result > 0 {
        line += &format!(
            ", {} finished without a stored result (result_ttl_s = 0?)",
            t.no_result
        );
    }
    if let Some(waited) = timed_out {
        line += &format!(
            ", {} did not finish within {:.0} s",
            unfinished.len(),
            waited.as_secs_f64()
        );
    }
    eprintln!("{line}");
    if !unfinished.is_empty() {
        let named: Vec<String> = unfinished
            .iter()
            .take(NAME_UNFINISHED)
            .map(|id| super::safe(id))
            .collect();
        let more = unfinished.len().saturating_sub(NAME_UNFINISHED);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        eprintln!("toolq: unfinished: {}{more}", named.join(", "));
    }
}

/// Writes result lines, holding back early finishers under `--ordered`.
struct Printer {
    out: std::io::Stdout,
    /// `--ordered`: results by batch index, printed once all before are.
    slots: Option<Vec<Option<String>>>,
    skip: Vec<bool>,
    next: usize,
}

impl Printer {
    fn new(s: &Submitted, ordered: bool) -> Self {
        let mut skip = vec![false; s.ids.len()];
        for &d in &s.duplicates {
            skip[d] = true;
        }
        Printer {
            out: std::io::stdout(),
            slots: ordered.then(|| vec![None; s.ids.len()]),
            skip,
            next: 0,
        }
    }

    fn push(&mut self, f: Finished) -> Result<(), CliError> {
        let line = f.raw.unwrap_or_else(|| {
            json!({"id": f.id, "status": "unknown", "error": {"kind": "no_result",
                "message": "the job finished but stored no result (result_ttl_s = 0, or it expired)"}})
            .to_string()
        });
        let Some(slots) = &mut self.slots else {
            return write(&mut self.out, &line);
        };
        slots[f.index] = Some(line);
        while self.next < slots.len() && (self.skip[self.next] || slots[self.next].is_some()) {
            if let Some(line) = slots[self.next].take() {
                write(&mut self.out, &line)?;
            }
            self.next += 1;
        }
        Ok(())
    }

    /// Under `--ordered` after a timeout: what finished, behind a gap.
    fn rest(&mut self) -> Result<(), CliError> {
        if let Some(slots) = &mut self.slots {
            for line in slots.iter_mut().filter_map(Option::take) {
                write(&mut self.out, &line)?;
            }
        }
        Ok(())
    }
}

fn write(out: &mut impl Write, line: &str) -> Result<(), CliError> {
    writeln!(out, "{line}").map_err(|e| CliError::Failed(format!("stdout: {e}")))
}
