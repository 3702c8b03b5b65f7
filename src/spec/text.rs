//! Text from outside (job ids, tool names, error messages) made safe for a
//! terminal or a line-based log: shared by the CLI's human output and the
//! pretty log format.

use std::borrow::Cow;

/// Escapes control characters (newlines, ESC sequences, C1 codes) so a
/// payload can neither forge lines nor drive the terminal; other text,
/// non-ASCII included, is kept as it is.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    // Printable ASCII (every job id and tool name a worker logs) is told by
    // its bytes, without decoding chars: a fold, not an early exit, so it
    // runs many bytes at a time.
    let printable_ascii = s
        .bytes()
        .fold(true, |ok, b| ok & (b' '..=b'~').contains(&b));
    if printable_ascii || !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(
            escape_controls("plain ø"),
            Cow::Borrowed("plain ø")
        ));
        assert!(matches!(
            escape_controls("job-1 ~!"),
            Cow::Borrowed("job-1 ~!")
        ));
        assert_eq!(escape_controls("a\nINFO forged\r"), "a\\nINFO forged\\r");
        // At both ends of printable ASCII: a tab, DEL.
        assert_eq!(escape_controls("a\tb\u{7f}"), "a\\tb\\u{7f}");
        assert_eq!(
            escape_controls("\u{1b}[31mred\u{9b}"),
            "\\u{1b}[31mred\\u{9b}"
        );
    }
}
