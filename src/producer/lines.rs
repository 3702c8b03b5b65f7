//! Reading a batch of jobs as JSON lines (the input of `toolq submit`):
//! every line is checked before anything is enqueued, and each bad one is
//! reported by its line number.

use std::collections::HashMap;
use std::io::BufRead;

use crate::job::ParseLimits;

use super::ValidJob;

/// Values for lines that do not set them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
}

/// A bad input line, shown as `line N: <what is wrong>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based, counting blank and comment lines, as an editor shows it.
    pub line: usize,
    pub message: String,
}

/// The jobs of an input, and what was wrong with the rest.
#[derive(Debug, Default)]
pub struct JobLines {
    pub jobs: Vec<ValidJob>,
    /// The input line of each job, in the same order.
    pub line_numbers: Vec<usize>,
    pub errors: Vec<LineError>,
}

/// Reads JSON lines, skipping blank lines and `#` comments. Fails only when
/// the input cannot be read; bad lines are collected in `errors`.
pub fn read_lines(
    mut input: impl BufRead,
    defaults: &Defaults,
    limits: ParseLimits,
) -> std::io::Result<JobLines> {
    let mut out = JobLines::default();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            return Ok(out);
        }
        line += 1;
        let text = trim(&buf);
        if text.is_empty() || text[0] == b'#' {
            continue;
        }
        let mut fail = |message: String| out.errors.push(LineError { line, message });
        let mut job = match ValidJob::parse(text, limits) {
            Ok(job) => job,
            Err(message) => {
                fail(message);
                continue;
            }
        };
        if let Some(id) = job.id() {
            if let Some(first) = ids.get(id) {
                fail(format!("duplicate id {id:?} (first on line {first})"));
                continue;
            }
            ids.insert(id.to_owned(), line);
        }
        if let Some(n) = defaults.max_attempts {
            job.set_default("max_attempts", n);
        }
        if let Some(ms) = defaults.timeout_ms {
            job.set_default("timeout_ms", ms);
        }
        out.jobs.push(job);
        out.line_numbers.push(line);
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> JobLines {
        read_lines(
            text.as_bytes(),
            &Defaults::default(),
            ParseLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn skips_blank_lines_and_comments_but_counts_them() {
        let r = read("# header\n\n{\"tool\":\"echo\",\"args\":{}}\r\n   \n{bad\n");
        assert_eq!(r.jobs.len(), 1);
        assert_eq!(r.line_numbers, vec![3]);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].line, 5);
        assert!(r.errors[0]
            .to_string()
            .starts_with("line 5: payload is not valid JSON"));
    }

    #[test]
    fn names_every_bad_line() {
        let r = read(concat!(
            "{\"tool\":\"echo\",\"args\":{}}\n",
            "not json\n",
            "{\"args\":{}}\n",
            "{\"tool\":\"echo\",\"args\":{},\"timeout_ms\":\"fast\"}\n",
            "{\"tool\":\"echo\",\"args\":{}}\n",
        ));
        let lines: Vec<usize> = r.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert_eq!(r.jobs.len(), 2);
        assert!(r.errors[1].message.contains("no `tool` field"));
        assert!(r.errors[2].message.contains("`timeout_ms`"));
    }

    #[test]
    fn rejects_a_repeated_id() {
        let r = read("{\"tool\":\"echo\",\"args\":{},\"id\":\"a\"}\n{\"tool\":\"echo\",\"args\":{},\"id\":\"a\"}");
        assert_eq!(r.jobs.len(), 1);
        assert_eq!(
            r.errors[0].to_string(),
            "line 2: duplicate id \"a\" (first on line 1)"
        );
    }

    #[test]
    fn invalid_utf8_is_a_bad_line() {
        let r = read_lines(
            &b"{\"tool\":\"echo\",\"args\":{\"s\":\"\xff\"}}\n"[..],
            &Defaults::default(),
            ParseLimits::default(),
        )
        .unwrap();
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].line, 1);
    }
}
