//! Log set-up for the binary: `RUST_LOG`-style filtering, pretty or JSON.
//!
//! Field values carry text from outside (a job's id and tool, an API's error
//! message). The pretty format escapes control characters in every value,
//! so a job id holding `\n2026-… INFO toolq: …` cannot forge a line and an
//! ESC sequence cannot drive the operator's terminal; JSON escapes them by
//! its nature.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::spec::escape_controls;

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG`
/// is unset. Logs go to stderr so stdout stays machine-readable.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour codes only for a person at a terminal: they cost time per span
    // and garble log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().fmt_fields(SafeFields).try_init(),
    };
}

/// The pretty format's fields, laid out as tracing's default (`message`
/// bare, the others `name=value`), with control characters escaped in every
/// value, the message included.
pub struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer: &mut writer,
            result: Ok(()),
            empty: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
    /// Nothing written yet: no separating space.
    empty: bool,
}

impl Visit for SafeVisitor<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let text = format!("{value:?}");
        let text = escape_controls(&text);
        let sep = if self.empty { "" } else { " " };
        self.empty = false;
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = match (name, self.writer.has_ansi_escapes()) {
            ("message", _) => write!(self.writer, "{sep}{text}"),
            (name, true) => write!(
                self.writer,
                "{sep}\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m{text}"
            ),
            (name, false) => write!(self.writer, "{sep}{name}={text}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_forge_lines_or_reach_the_terminal() {
        let id = "x\n2026-01-01T00:00:00Z  INFO toolq: FORGED LINE";
        let tool = "\u{1b}[2Jcalc";
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(Capture)
                .compact()
                .fmt_fields(SafeFields)
                .finish(),
            || tracing::info!(job_id = %id, tool, "burying {}", id),
        );
        let out = CAPTURED.with(|c| c.borrow().clone());
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains(r"job_id=x\n2026"), "{out}");
        assert!(out.contains(r"burying x\n2026"), "{out}");
    }

    thread_local! {
        static CAPTURED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }

    #[derive(Default, Clone)]
    struct Capture;

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            CAPTURED.with(|c| c.borrow_mut().push_str(&String::from_utf8_lossy(buf)));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            Capture
        }
    }
}
