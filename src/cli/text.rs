//! Human output: text from Redis (ids, tool names, error messages) made
//! safe for a terminal, and aligned tables.

/// Escapes control characters (newlines, ESC sequences) so a payload cannot
/// forge lines or drive the terminal.
pub fn safe(s: &str) -> String {
    crate::spec::escape_controls(s).into_owned()
}

/// Columns padded to their widest cell (in characters), two spaces apart;
/// the last column is not padded.
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("plain"), "plain");
        assert_eq!(safe("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(safe("\u{1b}[31mred"), "\\u{1b}[31mred");
    }

    #[test]
    fn columns_align() {
        let t = table(
            &["ID", "TOOL"],
            &[
                ["1".into(), "calculator".into()],
                ["22222".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID     TOOL\n1      calculator\n22222  x\n");
    }
}
