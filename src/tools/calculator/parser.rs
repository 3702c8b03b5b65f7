//! A recursive-descent parser for arithmetic. Grammar, loosest first:
//!
//! ```text
//! expr    := term (('+' | '-') term)*
//! term    := unary (('*' | '/' | '%') unary)*
//! unary   := ('-' | '+') unary | power
//! power   := primary ('^' unary)?
//! primary := number | constant | function '(' expr (',' expr)* ')' | '(' expr ')'
//! ```
//!
//! `^` takes a `unary` on its right, which makes it right-associative, lets
//! `2^-1` parse, and leaves `-2^2` as `-(2^2)`. Every way the grammar can
//! recurse (a group, a call, a sign, an exponent) passes through
//! [`Parser::enter`], so hostile input hits [`MAX_DEPTH`] long before the
//! stack is in danger.

use std::f64::consts;

use super::expr::{BinOp, Expr, Func};
use super::lexer::{tokenize, Token, TokenKind};
use crate::tools::ToolError;

/// Longest expression accepted, in characters other than white space. Also
/// bounds how deep a chain of `1+1+...` makes the tree the evaluator walks.
/// White space is not counted so that the normalised spelling of an
/// expression, which spaces its operators, is accepted as well.
pub const MAX_EXPRESSION_LEN: usize = 1000;

/// Longest expression text accepted, white space included: room for the
/// normalised spelling of the longest expression (at most three characters
/// for each of its own: ` + `).
pub const MAX_TEXT_LEN: usize = 4 * MAX_EXPRESSION_LEN;

/// Deepest nesting of groups, calls, signs and exponents accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed expression and its canonical spelling, which is what results
/// report so equal expressions read the same however they were spaced.
#[derive(Debug)]
pub(super) struct Parsed {
    pub expr: Expr,
    pub normalised: String,
}

pub(super) fn parse(src: &str) -> Result<Parsed, ToolError> {
    if src.len() > MAX_EXPRESSION_LEN {
        check_length(src)?;
    }
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        return Err(ToolError::InvalidArgs("expression is empty".to_owned()));
    }
    let mut parser = Parser {
        tokens: &tokens,
        next: 0,
        depth: 0,
        end: src.chars().count(),
        out: String::with_capacity(src.len() + 16),
    };
    let expr = parser.expr()?;
    if let Some(token) = parser.peek() {
        return Err(unexpected(token));
    }
    Ok(Parsed {
        expr,
        normalised: parser.out,
    })
}

/// Refuses an expression over [`MAX_EXPRESSION_LEN`] characters that are
/// not white space, or over [`MAX_TEXT_LEN`] in all; stops counting there.
fn check_length(src: &str) -> Result<(), ToolError> {
    let (mut all, mut solid) = (0, 0);
    for c in src.chars() {
        all += 1;
        solid += usize::from(!c.is_whitespace());
        if solid > MAX_EXPRESSION_LEN {
            return Err(ToolError::InvalidArgs(format!(
                "expression is longer than {MAX_EXPRESSION_LEN} characters (white space aside)"
            )));
        }
        if all > MAX_TEXT_LEN {
            return Err(ToolError::InvalidArgs(format!(
                "expression is longer than {MAX_TEXT_LEN} characters with its white space"
            )));
        }
    }
    Ok(())
}

struct Parser<'t, 's> {
    tokens: &'t [Token<'s>],
    next: usize,
    depth: usize,
    /// Character length of the input, the position reported for errors at
    /// the end.
    end: usize,
    /// The normalised expression, written as tokens are consumed.
    out: String,
}

impl<'s> Parser<'_, 's> {
    fn expr(&mut self) -> Result<Expr, ToolError> {
        self.chain(&['+', '-'], Self::term)
    }

    fn term(&mut self) -> Result<Expr, ToolError> {
        self.chain(&['*', '/', '%'], Self::unary)
    }

    /// A left-associative run of `operand (op operand)*`, built in a loop so
    /// long chains cost no stack.
    fn chain(
        &mut self,
        ops: &[char],
        operand: fn(&mut Self) -> Result<Expr, ToolError>,
    ) -> Result<Expr, ToolError> {
        let mut lhs = operand(self)?;
        while let Some(op) = self.eat_op(ops) {
            self.out.push(' ');
            self.out.push_str(op.symbol());
            self.out.push(' ');
            let rhs = operand(self)?;
            lhs = Expr::binary(op, lhs, rhs);
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ToolError> {
        let Some(token) = self.peek() else {
            return self.primary();
        };
        let negate = match token.kind {
            TokenKind::Op('-') => true,
            TokenKind::Op('+') => false,
            _ => return self.power(),
        };
        self.next += 1;
        self.enter(token.pos)?;
        if negate {
            self.out.push('-');
        }
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(if negate {
            Expr::Neg(Box::new(inner))
        } else {
            inner
        })
    }

    fn power(&mut self) -> Result<Expr, ToolError> {
        let base = self.primary()?;
        let Some(token) = self.peek().filter(|t| t.kind == TokenKind::Op('^')) else {
            return Ok(base);
        };
        self.next += 1;
        self.enter(token.pos)?;
        self.out.push_str(" ^ ");
        let exponent = self.unary()?;
        self.depth -= 1;
        Ok(Expr::binary(BinOp::Pow, base, exponent))
    }

    fn primary(&mut self) -> Result<Expr, ToolError> {
        let Some(token) = self.bump() else {
            return Err(ToolError::InvalidArgs(format!(
                "unexpected end of expression at position {}",
                self.end
            )));
        };
        match token.kind {
            TokenKind::Number(value) => {
                self.out.push_str(token.text);
                Ok(Expr::Num(value))
            }
            TokenKind::LParen => {
                self.enter(token.pos)?;
                self.out.push('(');
                let inner = self.expr()?;
                self.close(token)?;
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Ident if self.peek().is_some_and(|t| t.kind == TokenKind::LParen) => {
                self.call(token)
            }
            TokenKind::Ident => self.constant(token),
            _ => Err(unexpected(token)),
        }
    }

    fn call(&mut self, name: Token<'s>) -> Result<Expr, ToolError> {
        let func = Func::lookup(name.text).ok_or_else(|| {
            ToolError::InvalidArgs(format!(
                "unknown function '{}' at position {}",
                name.text, name.pos
            ))
        })?;
        let open = self.bump().unwrap_or(name);
        self.enter(name.pos)?;
        self.out.push_str(func.name());
        self.out.push('(');
        let mut args = Vec::new();
        if self.peek().is_some_and(|t| t.kind == TokenKind::RParen) {
            self.next += 1;
            self.out.push(')');
        } else {
            loop {
                args.push(self.expr()?);
                if self.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
                    self.next += 1;
                    self.out.push_str(", ");
                } else {
                    self.close(open)?;
                    break;
                }
            }
        }
        self.depth -= 1;
        func.check_arity(args.len(), name.pos)?;
        Ok(Expr::Call(func, args))
    }

    fn constant(&mut self, name: Token<'s>) -> Result<Expr, ToolError> {
        let (value, canonical) = if name.text.eq_ignore_ascii_case("pi") {
            (consts::PI, "pi")
        } else if name.text.eq_ignore_ascii_case("e") {
            (consts::E, "e")
        } else if Func::lookup(name.text).is_some() {
            return Err(ToolError::InvalidArgs(format!(
                "expected '(' after '{}' at position {}",
                name.text,
                name.pos + name.text.chars().count()
            )));
        } else {
            return Err(ToolError::InvalidArgs(format!(
                "unknown name '{}' at position {}",
                name.text, name.pos
            )));
        };
        self.out.push_str(canonical);
        Ok(Expr::Num(value))
    }

    /// Consumes the `)` matching `open`.
    fn close(&mut self, open: Token<'s>) -> Result<(), ToolError> {
        match self.bump() {
            Some(token) if token.kind == TokenKind::RParen => {
                self.out.push(')');
                Ok(())
            }
            Some(token) => Err(unexpected(token)),
            None => Err(ToolError::InvalidArgs(format!(
                "missing ')' for the '(' at position {}",
                open.pos
            ))),
        }
    }

    /// One level deeper; callers step back out with `self.depth -= 1`. An
    /// error abandons the whole parse, so its level is never released.
    fn enter(&mut self, pos: usize) -> Result<(), ToolError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ToolError::InvalidArgs(format!(
                "expression nests deeper than {MAX_DEPTH} levels at position {pos}"
            )));
        }
        Ok(())
    }

    fn eat_op(&mut self, ops: &[char]) -> Option<BinOp> {
        match self.peek()?.kind {
            TokenKind::Op(c) if ops.contains(&c) => {
                self.next += 1;
                BinOp::from_char(c)
            }
            _ => None,
        }
    }

    fn peek(&self) -> Option<Token<'s>> {
        self.tokens.get(self.next).copied()
    }

    fn bump(&mut self) -> Option<Token<'s>> {
        let token = self.peek()?;
        self.next += 1;
        Some(token)
    }
}

fn unexpected(token: Token<'_>) -> ToolError {
    ToolError::InvalidArgs(format!(
        "unexpected '{}' at position {}",
        token.text, token.pos
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn value(src: &str) -> f64 {
        parse(src).unwrap().expr.eval().unwrap()
    }

    fn normalised(src: &str) -> String {
        parse(src).unwrap().normalised
    }

    fn syntax_error(src: &str) -> String {
        match parse(src) {
            Err(ToolError::InvalidArgs(message)) => message,
            other => panic!("{src:?}: expected invalid args, got {other:?}"),
        }
    }

    #[test]
    fn precedence() {
        assert_eq!(value("2*(3+4)"), 14.0);
        assert_eq!(value("2+3*4"), 14.0);
        assert_eq!(value("2*3^2"), 18.0);
        assert_eq!(value("10-4/2"), 8.0);
        assert_eq!(value("7%4*2"), 6.0);
    }

    #[test]
    fn associativity() {
        assert_eq!(value("10-3-2"), 5.0);
        assert_eq!(value("64/4/2"), 8.0);
        assert_eq!(value("2^3^2"), 512.0);
        assert_eq!(value("(2^3)^2"), 64.0);
    }

    #[test]
    fn unary_signs() {
        assert_eq!(value("-2^2"), -4.0);
        assert_eq!(value("(-2)^2"), 4.0);
        assert_eq!(value("2^-1"), 0.5);
        assert_eq!(value("--3"), 3.0);
        assert_eq!(value("+-+3"), -3.0);
        assert_eq!(value("2*-3"), -6.0);
        assert_eq!(value("1 - -1"), 2.0);
    }

    #[test]
    fn functions_and_constants() {
        assert_eq!(value("sqrt(16)"), 4.0);
        assert_eq!(value("abs(-2.5)"), 2.5);
        assert_eq!(value("min(3, 1, 2)"), 1.0);
        assert_eq!(value("max(3)"), 3.0);
        assert_eq!(value("floor(-1.5) + ceil(1.2) + round(2.5)"), 3.0);
        assert_eq!(value("ln(e)"), 1.0);
        assert_eq!(value("log10(1000)"), 3.0);
        assert_eq!(value("exp(0)"), 1.0);
        assert_eq!(value("sin(0) + cos(0) + tan(0)"), 1.0);
        assert!((value("cos(pi)") + 1.0).abs() < 1e-12);
        assert_eq!(value("max(1, min(5, 2^2), -1)"), 4.0);
        assert_eq!(value("1.5e3 + .5"), 1500.5);
    }

    #[test]
    fn normalised_spelling() {
        assert_eq!(normalised("2*(3+4)"), "2 * (3 + 4)");
        assert_eq!(normalised("  -2 ^2"), "-2 ^ 2");
        assert_eq!(normalised("MAX( 1,2 )+PI"), "max(1, 2) + pi");
        assert_eq!(normalised("+1e3"), "1e3");
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        assert_eq!(syntax_error("2*(3+)"), "unexpected ')' at position 5");
        assert_eq!(syntax_error("(1+2))"), "unexpected ')' at position 5");
        assert_eq!(syntax_error("1 2"), "unexpected '2' at position 2");
        assert_eq!(
            syntax_error("1 +"),
            "unexpected end of expression at position 3"
        );
        assert_eq!(
            syntax_error("(1+2"),
            "missing ')' for the '(' at position 0"
        );
        assert_eq!(
            syntax_error("max(1,2"),
            "missing ')' for the '(' at position 3"
        );
        assert_eq!(
            syntax_error("1 $ 2"),
            "unexpected character '$' at position 2"
        );
        assert_eq!(
            syntax_error("foo(1)"),
            "unknown function 'foo' at position 0"
        );
        assert_eq!(syntax_error("x + 1"), "unknown name 'x' at position 0");
        assert_eq!(
            syntax_error("sqrt 4"),
            "expected '(' after 'sqrt' at position 4"
        );
        assert_eq!(syntax_error("2e"), "unexpected 'e' at position 1");
        assert_eq!(syntax_error("2**3"), "unexpected '*' at position 2");
        assert_eq!(syntax_error(""), "expression is empty");
        assert_eq!(syntax_error("  "), "expression is empty");
        assert!(syntax_error("sqrt()").contains("takes 1 argument, got 0"));
        assert!(syntax_error("min()").contains("at least 1 argument"));
        assert!(syntax_error("abs(1, 2)").contains("takes 1 argument, got 2"));
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        let src = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(value(&src), 1.0);
        let src = format!("{}1", "-".repeat(MAX_DEPTH));
        assert_eq!(value(&src), 1.0);
    }

    #[test]
    fn nesting_past_the_limit_is_rejected() {
        let deep = MAX_DEPTH + 1;
        let cases = [
            format!("{}1{}", "(".repeat(deep), ")".repeat(deep)),
            format!("{}1", "-".repeat(deep)),
            format!("{}1{}", "abs(".repeat(deep), ")".repeat(deep)),
            vec!["2"; deep + 1].join("^"),
            "(-".repeat(400),
        ];
        for src in cases {
            assert!(syntax_error(&src).contains("nests deeper than 64"), "{src}");
        }
    }

    #[test]
    fn long_chains_within_the_length_limit_evaluate() {
        let src = vec!["1"; MAX_EXPRESSION_LEN / 2].join("+");
        assert_eq!(value(&src), (MAX_EXPRESSION_LEN / 2) as f64);
    }

    /// Found by the `calculator` fuzz target: the normalised spelling of a
    /// long expression (which spaces its operators) was refused as too long,
    /// so the `expression` a result reported did not parse again.
    #[test]
    fn the_normalised_spelling_of_the_longest_expression_parses_again() {
        let src = vec!["1"; MAX_EXPRESSION_LEN / 2].join("+");
        let spelled = normalised(&src);
        assert_eq!(spelled.len(), 2 * src.len() - 1);
        assert_eq!(normalised(&spelled), spelled);
        assert_eq!(value(&spelled), (MAX_EXPRESSION_LEN / 2) as f64);
        let padded = format!("{}1", " ".repeat(MAX_TEXT_LEN));
        assert!(syntax_error(&padded).contains("longer than 4000"));
    }

    #[test]
    fn hostile_input_fails_fast() {
        let start = Instant::now();
        for src in [
            "(".repeat(100_000),
            "-".repeat(100_000),
            "1+".repeat(50_000),
            "é".repeat(MAX_EXPRESSION_LEN + 1),
        ] {
            assert!(syntax_error(&src).contains("longer than 1000"));
        }
        assert!(start.elapsed() < Duration::from_millis(200));
        let src = "(".repeat(MAX_EXPRESSION_LEN);
        assert!(syntax_error(&src).contains("nests deeper"));
    }
}
