//! Log set-up for the binary: `RUST_LOG`-style filtering, pretty or JSON.
//!
//! Field values carry text from outside (a job's id and tool, an API's error
//! message). The pretty format escapes control characters in every value,
//! so a job id holding `\n2026-… INFO toolq: …` cannot forge a line and an
//! ESC sequence cannot drive the operator's terminal; JSON escapes them by
//! its nature.

use std::fmt;
use std::io::IsTerminal;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
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
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(OneMessage(
                tracing_subscriber::fmt::format().json().flatten_event(true),
            ))
            .try_init(),
        LogFormat::Pretty => builder.compact().fmt_fields(SafeFields).try_init(),
    };
}

/// The pretty format's fields, laid out as tracing's default (`message`
/// bare, the others `name=value`), with control characters escaped in every
/// value, the message included.
pub struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let mut out = Gathered::new(writer);
        let mut visitor = SafeVisitor {
            out: &mut out,
            ansi,
            result: Ok(()),
            empty: true,
        };
        fields.record(&mut visitor);
        visitor.result?;
        out.flush()
    }
}

struct SafeVisitor<'a, 'w> {
    out: &'a mut Gathered<'w>,
    ansi: bool,
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
        let sep = if self.empty { "" } else { " " };
        self.empty = false;
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = write_field(self.out, self.ansi, sep, name, value);
    }
}

/// Writes one field piece by piece, its value streamed through
/// [`Escaping`]: every job's span formats its fields at info level, so a
/// `format!` per field (and the formatting machinery around it) was a
/// fifth of a worker's instructions per job.
fn write_field(
    w: &mut impl fmt::Write,
    ansi: bool,
    sep: &str,
    name: &str,
    value: &dyn fmt::Debug,
) -> fmt::Result {
    w.write_str(sep)?;
    match (name, ansi) {
        ("message", _) => {}
        (name, true) => {
            w.write_str("\x1b[3m")?;
            w.write_str(name)?;
            w.write_str("\x1b[0m\x1b[2m=\x1b[0m")?;
        }
        (name, false) => {
            w.write_str(name)?;
            w.write_str("=")?;
        }
    }
    fmt::Write::write_fmt(&mut Escaping(w), format_args!("{value:?}"))
}

/// Most bytes of fields gathered before they are passed on.
const GATHERED: usize = 256;

/// Fields gathered on the stack and passed on in one piece. A span's fields
/// are written into a `String` of their own, which grew four or five times
/// per job (to 8, 16, 32, 64, 128 bytes) when each piece went straight in.
struct Gathered<'w> {
    writer: Writer<'w>,
    buf: [u8; GATHERED],
    len: usize,
}

impl<'w> Gathered<'w> {
    fn new(writer: Writer<'w>) -> Self {
        Gathered {
            writer,
            buf: [0; GATHERED],
            len: 0,
        }
    }

    fn flush(&mut self) -> fmt::Result {
        // Whole `str`s only ever go in, so this never fails.
        let text = std::str::from_utf8(&self.buf[..self.len]).map_err(|_| fmt::Error)?;
        self.writer.write_str(text)?;
        self.len = 0;
        Ok(())
    }
}

impl fmt::Write for Gathered<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > GATHERED {
            self.flush()?;
            if s.len() > GATHERED {
                return self.writer.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Passes text on with control characters escaped, chunk by chunk: a
/// control character is one `char`, never split across chunks, so this
/// writes what escaping the whole value at once would.
struct Escaping<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write_str(&escape_controls(s))
    }
}

/// The JSON format with one `message` key per line. An event with a field
/// named `message` besides its text (`warn!(%message, "burying")`) would
/// otherwise be written with two, which many JSON readers reject or read
/// as either one; the field is renamed `fields.message`. Only such events
/// pay for the rewrite.
pub struct OneMessage<F>(pub F);

/// What a second `message` key is renamed to.
const SECOND_MESSAGE: &str = "fields.message";

impl<S, N, F> FormatEvent<S, N> for OneMessage<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let fields = event.metadata().fields();
        if fields.iter().filter(|f| f.name() == "message").count() < 2 {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&one_message(&line))
    }
}

/// `line` (one JSON object and a newline) with every `message` key after
/// the first renamed; as it was when it does not parse.
fn one_message(line: &str) -> String {
    let Ok(Pairs(pairs)) = serde_json::from_str::<Pairs>(line) else {
        return line.to_owned();
    };
    let mut out = String::with_capacity(line.len() + 16);
    let mut seen = false;
    out.push('{');
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let key = match key.as_str() {
            "message" if seen => SECOND_MESSAGE,
            "message" => {
                seen = true;
                "message"
            }
            k => k,
        };
        out.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        out.push(':');
        out.push_str(value.get());
    }
    out.push_str("}\n");
    out
}

/// A JSON object's members in order, duplicates kept.
struct Pairs(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `log` writes in the pretty format, without colours.
    fn pretty(log: impl FnOnce()) -> String {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Capture)
            .compact()
            .fmt_fields(SafeFields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        CAPTURED.with(|c| c.borrow().clone())
    }

    #[test]
    fn values_cannot_forge_lines_or_reach_the_terminal() {
        let id = "x\n2026-01-01T00:00:00Z  INFO toolq: FORGED LINE";
        let tool = "\u{1b}[2Jcalc";
        let out = pretty(|| tracing::info!(job_id = %id, tool, "burying {}", id));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains(r"job_id=x\n2026"), "{out}");
        assert!(out.contains(r"burying x\n2026"), "{out}");
    }

    #[test]
    fn fields_longer_than_the_gathering_buffer_come_out_whole() {
        let (a, b) = ("a".repeat(300), "b\n".repeat(100));
        let near = "c".repeat(GATHERED - "job_id=".len());
        let out = pretty(|| {
            tracing::info_span!("job", job_id = %near, attempt = 2)
                .in_scope(|| tracing::info!(a = %a, b = %b, n = 7, "hi"))
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        let b_escaped = "b\\n".repeat(100);
        assert!(out.contains(&format!(" job_id={near} attempt=2")), "{out}");
        assert!(
            out.contains(&format!("hi a={a} b={b_escaped} n=7")),
            "{out}"
        );
    }

    #[test]
    fn a_value_streamed_in_pieces_is_escaped_as_a_whole() {
        let pieces = ["plain ", "a\nINFO forged\r", "", "\u{1b}[31m", "ø"];
        let mut streamed = String::new();
        for piece in pieces {
            fmt::Write::write_str(&mut Escaping(&mut streamed), piece).unwrap();
        }
        assert_eq!(streamed, escape_controls(&pieces.concat()));
        assert_eq!(streamed, "plain a\\nINFO forged\\r\\u{1b}[31mø");
    }

    #[test]
    fn a_json_line_has_one_message_key() {
        let message = "unknown tool `x`";
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(Capture)
                .fmt_fields(JsonFields::new())
                .event_format(OneMessage(
                    tracing_subscriber::fmt::format().json().flatten_event(true),
                ))
                .finish(),
            || tracing::warn!(%message, kind = "k", "burying job"),
        );
        let out = CAPTURED.with(|c| c.borrow().clone());
        assert_eq!(out.matches("\"message\":").count(), 1, "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["message"], "burying job");
        assert_eq!(v[SECOND_MESSAGE], "unknown tool `x`");
        assert_eq!(v["kind"], "k");
        assert_eq!(v["level"], "WARN");
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
