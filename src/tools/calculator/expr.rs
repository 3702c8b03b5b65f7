//! The parsed expression and its evaluation. Every step checks its result is
//! finite, so an overflow or a value outside a function's domain stops the
//! evaluation at the operation that caused it, with that operation named.

use crate::tools::ToolError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    Num(f64),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Sqrt,
    Abs,
    Min,
    Max,
    Floor,
    Ceil,
    Round,
    Ln,
    Log10,
    Exp,
    Sin,
    Cos,
    Tan,
}

impl Expr {
    pub(super) fn binary(op: BinOp, lhs: Expr, rhs: Expr) -> Self {
        Expr::Binary(op, Box::new(lhs), Box::new(rhs))
    }

    /// Evaluates the tree. Recursion is bounded: the parser caps nesting and
    /// the length cap bounds how long an operator chain can be.
    pub(super) fn eval(&self) -> Result<f64, ToolError> {
        match self {
            Expr::Num(x) => Ok(*x),
            Expr::Neg(inner) => Ok(-inner.eval()?),
            Expr::Binary(op, lhs, rhs) => op.apply(lhs.eval()?, rhs.eval()?),
            Expr::Call(func, args) => {
                let values = args.iter().map(Expr::eval).collect::<Result<Vec<_>, _>>()?;
                func.apply(&values)
            }
        }
    }
}

impl BinOp {
    pub(super) fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '+' => BinOp::Add,
            '-' => BinOp::Sub,
            '*' => BinOp::Mul,
            '/' => BinOp::Div,
            '%' => BinOp::Rem,
            '^' => BinOp::Pow,
            _ => return None,
        })
    }

    pub(super) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "^",
        }
    }

    /// `%` is the truncated remainder (its sign follows the dividend), as in
    /// C, Rust and JavaScript.
    pub(super) fn apply(self, a: f64, b: f64) -> Result<f64, ToolError> {
        let value = match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => return Err(math("division by zero")),
            BinOp::Div => a / b,
            BinOp::Rem if b == 0.0 => return Err(math("modulo by zero")),
            BinOp::Rem => a % b,
            BinOp::Pow => libm::pow(a, b),
        };
        finite(value, || {
            format!("{} {} {}", show(a), self.symbol(), show(b))
        })
    }
}

impl Func {
    pub(super) fn lookup(name: &str) -> Option<Self> {
        const ALL: [Func; 13] = [
            Func::Sqrt,
            Func::Abs,
            Func::Min,
            Func::Max,
            Func::Floor,
            Func::Ceil,
            Func::Round,
            Func::Ln,
            Func::Log10,
            Func::Exp,
            Func::Sin,
            Func::Cos,
            Func::Tan,
        ];
        ALL.into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::Round => "round",
            Func::Ln => "ln",
            Func::Log10 => "log10",
            Func::Exp => "exp",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Tan => "tan",
        }
    }

    pub(super) fn is_variadic(self) -> bool {
        matches!(self, Func::Min | Func::Max)
    }

    /// Checked at parse time so a wrong argument count is bad input, not a
    /// math error found only when the job runs.
    pub(super) fn check_arity(self, count: usize, pos: usize) -> Result<(), ToolError> {
        let ok = if self.is_variadic() {
            count >= 1
        } else {
            count == 1
        };
        if ok {
            return Ok(());
        }
        let wanted = if self.is_variadic() {
            "at least 1 argument"
        } else {
            "1 argument"
        };
        Err(ToolError::InvalidArgs(format!(
            "{}() at position {pos} takes {wanted}, got {count}",
            self.name()
        )))
    }

    /// `round` rounds halves away from zero; trigonometry is in radians.
    fn apply(self, args: &[f64]) -> Result<f64, ToolError> {
        let value = match (self, args) {
            (Func::Min, [first, rest @ ..]) => rest.iter().copied().fold(*first, f64::min),
            (Func::Max, [first, rest @ ..]) => rest.iter().copied().fold(*first, f64::max),
            (_, &[x]) if !self.is_variadic() => self.apply_one(x),
            _ => {
                return Err(ToolError::InvalidArgs(format!(
                    "{}() got {} arguments",
                    self.name(),
                    args.len()
                )))
            }
        };
        finite(value, || {
            let shown: Vec<String> = args.iter().map(|&x| show(x)).collect();
            format!("{}({})", self.name(), shown.join(", "))
        })
    }

    fn apply_one(self, x: f64) -> f64 {
        match self {
            Func::Sqrt => x.sqrt(),
            Func::Abs => x.abs(),
            Func::Floor => x.floor(),
            Func::Ceil => x.ceil(),
            Func::Round => x.round(),
            Func::Ln => libm::log(x),
            Func::Log10 => libm::log10(x),
            Func::Exp => libm::exp(x),
            Func::Sin => libm::sin(x),
            Func::Cos => libm::cos(x),
            Func::Tan => libm::tan(x),
            Func::Min | Func::Max => x,
        }
    }
}

fn math(message: &str) -> ToolError {
    ToolError::Permanent(message.to_owned())
}

/// Turns NaN and infinities into a permanent error naming the operation;
/// `what` is only formatted on that path.
fn finite(value: f64, what: impl FnOnce() -> String) -> Result<f64, ToolError> {
    if value.is_finite() {
        return Ok(value);
    }
    let why = if value.is_nan() {
        "is not a real number"
    } else {
        "is infinite"
    };
    Err(ToolError::Permanent(format!(
        "result is not finite: {} {why}",
        what()
    )))
}

/// Operands in error messages: plain for ordinary values, scientific for huge
/// or tiny ones, so `1e300` does not print 301 digits.
fn show(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude == 0.0 || (1e-4..1e15).contains(&magnitude) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(x: f64) -> Expr {
        Expr::Num(x)
    }

    fn permanent(result: Result<f64, ToolError>) -> String {
        match result {
            Err(ToolError::Permanent(message)) => message,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn operators_apply() {
        assert_eq!(BinOp::Rem.apply(-7.0, 3.0), Ok(-1.0));
        assert_eq!(BinOp::Pow.apply(2.0, -1.0), Ok(0.5));
        assert_eq!(Expr::Neg(Box::new(num(3.0))).eval(), Ok(-3.0));
    }

    #[test]
    fn division_and_modulo_by_zero() {
        assert_eq!(permanent(BinOp::Div.apply(1.0, 0.0)), "division by zero");
        assert_eq!(permanent(BinOp::Div.apply(1.0, -0.0)), "division by zero");
        assert_eq!(permanent(BinOp::Rem.apply(1.0, 0.0)), "modulo by zero");
    }

    #[test]
    fn non_finite_results_name_the_operation() {
        let message = permanent(BinOp::Pow.apply(2.0, 100_000.0));
        assert_eq!(message, "result is not finite: 2 ^ 100000 is infinite");
        let message = permanent(BinOp::Mul.apply(1e300, 1e300));
        assert_eq!(message, "result is not finite: 1e300 * 1e300 is infinite");
        let message = permanent(Func::Sqrt.apply(&[-1.0]));
        assert_eq!(
            message,
            "result is not finite: sqrt(-1) is not a real number"
        );
        assert!(permanent(Func::Ln.apply(&[0.0])).contains("ln(0) is infinite"));
    }

    #[test]
    fn functions_check_their_argument_count() {
        assert!(Func::Min.check_arity(3, 0).is_ok());
        let err = Func::Max.check_arity(0, 4).unwrap_err();
        assert!(matches!(&err, ToolError::InvalidArgs(m) if m.contains("at least 1")));
        let err = Func::Sqrt.check_arity(2, 0).unwrap_err();
        assert!(matches!(&err, ToolError::InvalidArgs(m) if m.contains("takes 1 argument, got 2")));
        assert!(Func::Sqrt.apply(&[1.0, 2.0]).is_err());
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(Func::lookup("LOG10"), Some(Func::Log10));
        assert_eq!(Func::lookup("log"), None);
    }
}
