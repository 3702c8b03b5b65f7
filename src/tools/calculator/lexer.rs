//! Splits an expression into tokens. Every token keeps its source text and
//! its character position so parse errors can point at the culprit, and so
//! the normalised expression can repeat numbers exactly as the user wrote
//! them.

use crate::tools::ToolError;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TokenKind {
    Number(f64),
    Ident,
    /// One of `+ - * / % ^`.
    Op(char),
    LParen,
    RParen,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
    /// 0-based character (not byte) offset into the expression.
    pub pos: usize,
}

/// Tokenizes `src`. The caller has already bounded its length, so collecting
/// the characters up front costs at most a few kilobytes.
pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, ToolError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(src.len(), |&(b, _)| b);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(_, c)) = chars.get(i) {
        let start = i;
        let kind = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '0'..='9' | '.' => {
                i = scan_number(&chars, start);
                let text = &src[byte_at(start)..byte_at(i)];
                TokenKind::Number(parse_number(text, start)?)
            }
            _ if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .get(i)
                    .is_some_and(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
                {
                    i += 1;
                }
                TokenKind::Ident
            }
            '+' | '-' | '*' | '/' | '%' | '^' => {
                i += 1;
                TokenKind::Op(c)
            }
            '(' => {
                i += 1;
                TokenKind::LParen
            }
            ')' => {
                i += 1;
                TokenKind::RParen
            }
            ',' => {
                i += 1;
                TokenKind::Comma
            }
            _ => {
                return Err(ToolError::InvalidArgs(format!(
                    "unexpected character '{c}' at position {start}"
                )))
            }
        };
        tokens.push(Token {
            kind,
            text: &src[byte_at(start)..byte_at(i)],
            pos: start,
        });
    }
    Ok(tokens)
}

/// Returns the index just past a number starting at `i`: digits, an optional
/// fraction, and an exponent only when digits follow the `e`, so a stray `e`
/// is left for the parser to reject by name.
fn scan_number(chars: &[(usize, char)], mut i: usize) -> usize {
    let char_at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let is_digit = |i: usize| char_at(i).is_some_and(|c| c.is_ascii_digit());
    while is_digit(i) {
        i += 1;
    }
    if char_at(i) == Some('.') {
        i += 1;
        while is_digit(i) {
            i += 1;
        }
    }
    if matches!(char_at(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(char_at(j), Some('+' | '-')) {
            j += 1;
        }
        if is_digit(j) {
            i = j;
            while is_digit(i) {
                i += 1;
            }
        }
    }
    i
}

fn parse_number(text: &str, pos: usize) -> Result<f64, ToolError> {
    let invalid = || ToolError::InvalidArgs(format!("invalid number '{text}' at position {pos}"));
    let value: f64 = text.parse().map_err(|_| invalid())?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ToolError::InvalidArgs(format!(
            "number '{text}' at position {pos} is too large"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn numbers_in_every_form() {
        assert_eq!(
            kinds("12 3.5 .25 1e3 2.5E-2 7."),
            [12.0, 3.5, 0.25, 1000.0, 0.025, 7.0].map(TokenKind::Number)
        );
    }

    #[test]
    fn a_dangling_exponent_is_left_as_a_name() {
        let tokens = tokenize("2e").unwrap();
        assert_eq!(tokens[0].kind, TokenKind::Number(2.0));
        assert_eq!((tokens[1].kind, tokens[1].text), (TokenKind::Ident, "e"));
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let err = tokenize("é").unwrap_err();
        assert!(err.to_string().contains("'é' at position 0"));
        let err = tokenize("1 + é").unwrap_err();
        assert!(err.to_string().contains("at position 4"), "{err}");
        let tokens = tokenize("(1)").unwrap();
        assert_eq!(tokens.iter().map(|t| t.pos).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn bad_numbers_are_invalid_args() {
        let err = tokenize(".").unwrap_err();
        assert!(matches!(&err, ToolError::InvalidArgs(m) if m.contains("invalid number '.'")));
        let err = tokenize("1e400").unwrap_err();
        assert!(matches!(&err, ToolError::InvalidArgs(m) if m.contains("too large")));
    }
}
