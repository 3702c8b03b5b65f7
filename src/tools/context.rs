//! What a tool call knows about its job: the id (so a tool with outside
//! effects can make them idempotent: a re-run after a crash reuses it), the
//! attempt (0 on the first try) and the queue, and where to report
//! progress.
//!
//! Tools know nothing of Redis: progress goes to a [`ProgressSink`] the
//! caller provides. The worker's sink stores it with the job's running state
//! (rate limited, never blocking the tool); a context made with
//! [`JobContext::new`] outside a worker drops it.

use std::fmt;

/// Longest progress message kept, in characters; longer ones are cut.
pub const MAX_PROGRESS_MESSAGE_CHARS: usize = 200;

/// Receives a call's progress reports. Implementations must return at once:
/// a tool may report in a tight loop.
pub trait ProgressSink: Send + Sync {
    /// `fraction` is within 0..=1 and `message` at most
    /// [`MAX_PROGRESS_MESSAGE_CHARS`] characters: [`JobContext::progress`]
    /// makes them so.
    fn report(&self, fraction: f64, message: &str);
}

/// A sink that drops every report.
struct Discard;

impl ProgressSink for Discard {
    fn report(&self, _fraction: f64, _message: &str) {}
}

/// The job a tool call runs for. Borrowed for the call: cheap to pass, and a
/// job whose tool never reports costs nothing more.
#[derive(Clone, Copy)]
pub struct JobContext<'a> {
    id: &'a str,
    attempt: u32,
    queue: &'a str,
    sink: &'a dyn ProgressSink,
}

impl<'a> JobContext<'a> {
    /// A context whose progress reports go nowhere: for calling a tool
    /// outside a worker (tests, a program of your own).
    pub fn new(id: &'a str, attempt: u32, queue: &'a str) -> Self {
        JobContext {
            id,
            attempt,
            queue,
            sink: &Discard,
        }
    }

    /// The same context with progress reports going to `sink`.
    pub fn with_sink(self, sink: &'a dyn ProgressSink) -> Self {
        JobContext { sink, ..self }
    }

    /// The job's id: the same on every attempt and after a crash, so a tool
    /// can pass it on as an idempotency key.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// Tries made before this one: 0 on the first.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The queue the job was taken from.
    pub fn queue(&self) -> &'a str {
        self.queue
    }

    /// Reports how far the call has come: `fraction` from 0 to 1 (clamped;
    /// NaN counts as 0) and a short message (cut to
    /// [`MAX_PROGRESS_MESSAGE_CHARS`]). Returns at once and never fails:
    /// the worker keeps the latest report and writes it at most a few
    /// times a second, and the last one always.
    pub fn progress(&self, fraction: f64, message: &str) {
        let fraction = match fraction.is_nan() {
            true => 0.0,
            false => fraction.clamp(0.0, 1.0),
        };
        let message = match message.char_indices().nth(MAX_PROGRESS_MESSAGE_CHARS) {
            Some((end, _)) => &message[..end],
            None => message,
        };
        self.sink.report(fraction, message);
    }
}

impl fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Keep(Mutex<Vec<(f64, String)>>);

    impl ProgressSink for Keep {
        fn report(&self, fraction: f64, message: &str) {
            self.0.lock().unwrap().push((fraction, message.to_owned()));
        }
    }

    #[test]
    fn reports_are_clamped_and_cut() {
        let keep = Keep::default();
        let cx = JobContext::new("j1", 2, "q").with_sink(&keep);
        assert_eq!((cx.id(), cx.attempt(), cx.queue()), ("j1", 2, "q"));
        cx.progress(0.5, "half");
        cx.progress(7.0, "over");
        cx.progress(-1.0, "under");
        cx.progress(f64::NAN, "nan");
        cx.progress(1.0, &"é".repeat(500));
        let got = keep.0.into_inner().unwrap();
        let fractions: Vec<f64> = got.iter().map(|(f, _)| *f).collect();
        assert_eq!(fractions, [0.5, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(got[4].1.chars().count(), MAX_PROGRESS_MESSAGE_CHARS);
        assert_eq!(got[0].1, "half");
    }

    #[test]
    fn a_plain_context_drops_reports() {
        JobContext::new("j", 0, "q").progress(0.3, "nowhere");
    }
}
