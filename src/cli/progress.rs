//! Progress on stderr: an indicatif bar when stderr is a terminal, a plain
//! line every few seconds when it is not (logs stay readable), and nothing
//! for short runs that end before the first line is due.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: u64,
    last_plain: Instant,
    /// What a running job last reported (see [`Progress::jobs`]), drawn
    /// after the counts.
    job: Arc<Mutex<String>>,
}

impl Progress {
    /// Jobs being enqueued.
    pub fn submitting(total: usize) -> Self {
        Self::new(
            total,
            "submitted",
            "{prefix} [{bar:25}] {pos}/{len} enqueued  {rate}  ETA {eta}",
        )
    }

    /// Jobs being awaited.
    pub fn waiting(total: usize) -> Self {
        Self::new(
            total,
            "finished",
            "{prefix} [{bar:25}] {pos}/{len} finished ({msg})  {rate}  ETA {eta}{job}",
        )
    }

    fn new(total: usize, label: &'static str, template: &str) -> Self {
        let total = total as u64;
        let job = Arc::new(Mutex::new(String::new()));
        let shown = job.clone();
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", s.per_sec());
                })
                .with_key(
                    "job",
                    move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                        if let Ok(line) = shown.lock() {
                            if !line.is_empty() {
                                let _ = write!(w, "  · {line}");
                            }
                        }
                    },
                )
                .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_prefix("toolq");
            bar.set_message("0 dead");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            label,
            total,
            last_plain: Instant::now(),
            job,
        }
    }

    /// Where a watcher of the batch's jobs puts the latest progress report
    /// (see `cli::watch`): drawn on the bar, or written as a plain line.
    pub fn jobs(&self) -> JobLine {
        JobLine {
            line: self.job.clone(),
            plain: self.bar.is_none(),
            last_plain: None,
        }
    }

    /// `dead`: finished jobs that did not succeed.
    pub fn update(&mut self, done: u64, dead: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{dead} dead"));
            }
            None if self.last_plain.elapsed() >= PLAIN_EVERY => {
                self.last_plain = Instant::now();
                let dead = match self.label {
                    "finished" => format!(" ({dead} dead)"),
                    _ => String::new(),
                };
                eprintln!("toolq: {} {done}/{}{dead}", self.label, self.total);
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The job part of the progress line.
pub struct JobLine {
    line: Arc<Mutex<String>>,
    plain: bool,
    last_plain: Option<Instant>,
}

impl JobLine {
    /// Shows `text` (already safe to print): on the bar at its next tick,
    /// or as a plain line when stderr is not a terminal (at most one every
    /// few seconds).
    pub fn set(&mut self, text: String) {
        if self.plain {
            if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) && !text.is_empty() {
                self.last_plain = Some(Instant::now());
                eprintln!("toolq: progress {text}");
            }
            return;
        }
        if let Ok(mut line) = self.line.lock() {
            *line = text;
        }
    }
}
