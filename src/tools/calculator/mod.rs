//! `calculator`: arithmetic evaluated by a hand-written parser, never by
//! executing code. Takes `{"expression": "2*(3+4)"}` or the older
//! `{"operation": "add", "a": 2, "b": 3}` form; both go through the same
//! evaluator so they fail the same way.
//!
//! Bad input (wrong types, syntax) is [`ToolError::InvalidArgs`] and is
//! caught by `validate` before any attempt runs; math errors (division by
//! zero, a non-finite result) are [`ToolError::Permanent`].

mod expr;
mod lexer;
#[cfg(feature = "test-tools")]
pub(crate) mod measure;
mod parser;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use self::expr::{BinOp, Expr};
use self::parser::Parsed;
use super::{JobContext, Tool, ToolError};

/// Integral results below this magnitude are returned as JSON integers:
/// every such value is exactly representable in both f64 and i64 (2^53).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Operation names the seed accepted, short and long.
const OPERATIONS: [(&str, BinOp); 11] = [
    ("add", BinOp::Add),
    ("subtract", BinOp::Sub),
    ("sub", BinOp::Sub),
    ("multiply", BinOp::Mul),
    ("mul", BinOp::Mul),
    ("divide", BinOp::Div),
    ("div", BinOp::Div),
    ("power", BinOp::Pow),
    ("pow", BinOp::Pow),
    ("modulo", BinOp::Rem),
    ("mod", BinOp::Rem),
];

/// The built-in `calculator` tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calculator;

#[async_trait]
impl Tool for Calculator {
    fn name(&self) -> &str {
        "calculator"
    }

    fn validate(&self, args: &Value) -> Result<(), ToolError> {
        request(args).map(drop)
    }

    fn description(&self) -> String {
        "Evaluates an arithmetic expression safely (never code): `expression`, or `operation` with numbers `a` and `b`.".into()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "e.g. 2*(3+4)"},
                "operation": {"type": "string", "enum": ["add", "subtract", "multiply", "divide", "power", "modulo", "sub", "mul", "div", "pow", "mod"]},
                "a": {"type": "number"},
                "b": {"type": "number"}
            },
            "oneOf": [{"required": ["expression"]}, {"required": ["operation", "a", "b"]}]
        })
    }

    fn source(&self) -> &'static str {
        "builtin"
    }

    async fn call(&self, args: &Value, _cx: JobContext<'_>) -> Result<Value, ToolError> {
        let Parsed { expr, normalised } = request(args)?;
        let result = expr.eval()?;
        Ok(json!({ "result": number(result), "expression": normalised }))
    }
}

/// Reads either argument form into one parsed expression.
fn request(args: &Value) -> Result<Parsed, ToolError> {
    let args = args
        .as_object()
        .ok_or_else(|| invalid("arguments must be a JSON object"))?;
    match (args.get("expression"), args.get("operation")) {
        (Some(_), Some(_)) => Err(invalid(
            "give either 'expression' or 'operation' with 'a' and 'b', not both",
        )),
        (Some(Value::String(src)), None) => parser::parse(src),
        (Some(_), None) => Err(invalid("'expression' must be a string")),
        (None, Some(op)) => operation(op, args),
        (None, None) => Err(invalid(
            "expected 'expression' (a string) or 'operation' with numbers 'a' and 'b'",
        )),
    }
}

fn operation(op: &Value, args: &Map<String, Value>) -> Result<Parsed, ToolError> {
    let name = op
        .as_str()
        .ok_or_else(|| invalid("'operation' must be a string"))?;
    let op = OPERATIONS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|&(_, op)| op)
        .ok_or_else(|| {
            invalid(&format!(
                "unknown operation '{name}'; expected one of add, subtract, multiply, \
                 divide, power, modulo (or sub, mul, div, pow, mod)"
            ))
        })?;
    let (a, a_text) = operand(args, "a")?;
    let (b, b_text) = operand(args, "b")?;
    Ok(Parsed {
        expr: Expr::binary(op, Expr::Num(a), Expr::Num(b)),
        normalised: format!("{a_text} {} {b_text}", op.symbol()),
    })
}

/// A numeric operand and its JSON spelling for the normalised expression.
fn operand(args: &Map<String, Value>, key: &str) -> Result<(f64, String), ToolError> {
    match args.get(key) {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(|x| (x, n.to_string()))
            .ok_or_else(|| invalid(&format!("'{key}' is out of range"))),
        Some(_) => Err(invalid(&format!("'{key}' must be a number"))),
        None => Err(invalid(&format!("missing '{key}' (a number)"))),
    }
}

/// Integral results as JSON integers (`7`, not `7.0`), everything else as
/// floats. Evaluation only returns finite values, so the float always fits.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < EXACT_INTEGER_LIMIT {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn invalid(message: &str) -> ToolError {
    ToolError::InvalidArgs(message.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::parser::{MAX_DEPTH, MAX_EXPRESSION_LEN};
    use super::*;

    async fn run(args: Value) -> Result<Value, ToolError> {
        Calculator.validate(&args)?;
        Calculator
            .call(&args, JobContext::new("test", 0, "default"))
            .await
    }

    fn invalid_message(result: Result<Value, ToolError>) -> String {
        match result {
            Err(ToolError::InvalidArgs(message)) => message,
            other => panic!("expected invalid args, got {other:?}"),
        }
    }

    fn permanent_message(result: Result<Value, ToolError>) -> String {
        match result {
            Err(ToolError::Permanent(message)) => message,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn evaluates_an_expression() {
        let output = run(json!({"expression": "2*(3+4)"})).await.unwrap();
        assert_eq!(output, json!({"result": 14, "expression": "2 * (3 + 4)"}));
        assert!(output["result"].is_i64());
    }

    #[tokio::test]
    async fn integers_only_when_exact() {
        let result = |src: &str| {
            let src = src.to_owned();
            async move { run(json!({ "expression": src })).await.unwrap()["result"].clone() }
        };
        assert_eq!(result("7/2").await, json!(3.5));
        assert_eq!(result("-0").await, json!(0));
        assert_eq!(result("2^53 - 1").await, json!(9_007_199_254_740_991_i64));
        assert!(result("2^53").await.is_f64());
        assert!(result("1e300").await.is_f64());
    }

    #[tokio::test]
    async fn evaluates_every_operation_name() {
        let cases = [
            ("add", 9.0),
            ("subtract", 5.0),
            ("sub", 5.0),
            ("multiply", 14.0),
            ("mul", 14.0),
            ("divide", 3.5),
            ("div", 3.5),
            ("power", 49.0),
            ("pow", 49.0),
            ("modulo", 1.0),
            ("MOD", 1.0),
        ];
        for (operation, expected) in cases {
            let output = run(json!({"operation": operation, "a": 7, "b": 2}))
                .await
                .unwrap();
            assert_eq!(output["result"].as_f64(), Some(expected), "{operation}");
        }
        let output = run(json!({"operation": "sub", "a": 1.5, "b": -2}))
            .await
            .unwrap();
        assert_eq!(output, json!({"result": 3.5, "expression": "1.5 - -2"}));
    }

    #[tokio::test]
    async fn rejects_malformed_arguments() {
        let cases = [
            (json!("2+2"), "must be a JSON object"),
            (json!({}), "expected 'expression'"),
            (json!({"expression": 4}), "'expression' must be a string"),
            (json!({"expression": "1", "operation": "add"}), "not both"),
            (
                json!({"operation": 1, "a": 1, "b": 2}),
                "'operation' must be a string",
            ),
            (
                json!({"operation": "root", "a": 1, "b": 2}),
                "unknown operation 'root'",
            ),
            (
                json!({"operation": "", "a": 1, "b": 2}),
                "unknown operation ''",
            ),
            (json!({"operation": "add", "b": 2}), "missing 'a'"),
            (json!({"operation": "add", "a": 1}), "missing 'b'"),
            (
                json!({"operation": "add", "a": "1", "b": 2}),
                "'a' must be a number",
            ),
            (
                json!({"expression": "2*(3+)"}),
                "unexpected ')' at position 5",
            ),
        ];
        for (args, expected) in cases {
            assert!(Calculator.validate(&args).is_err(), "{args}");
            let message = invalid_message(
                Calculator
                    .call(&args, JobContext::new("test", 0, "default"))
                    .await,
            );
            assert!(message.contains(expected), "{args}: {message}");
        }
    }

    #[tokio::test]
    async fn math_errors_are_permanent() {
        let cases = [
            (json!({"expression": "1/0"}), "division by zero"),
            (json!({"expression": "1/(2-2)"}), "division by zero"),
            (json!({"expression": "5 % 0"}), "modulo by zero"),
            (
                json!({"operation": "div", "a": 1, "b": 0}),
                "division by zero",
            ),
            (
                json!({"operation": "mod", "a": 1, "b": 0}),
                "modulo by zero",
            ),
            (json!({"expression": "sqrt(-1)"}), "not finite"),
            (json!({"expression": "ln(0)"}), "not finite"),
            (json!({"expression": "exp(1000)"}), "not finite"),
            (json!({"expression": "1e308 * 10"}), "not finite"),
            (json!({"expression": "0^-1"}), "not finite"),
        ];
        for (args, expected) in cases {
            // Math errors only show up when evaluating, so validation passes.
            assert!(Calculator.validate(&args).is_ok(), "{args}");
            let message = permanent_message(
                Calculator
                    .call(&args, JobContext::new("test", 0, "default"))
                    .await,
            );
            assert!(message.contains(expected), "{args}: {message}");
        }
    }

    #[tokio::test]
    async fn exponent_blow_ups_fail_fast() {
        let start = Instant::now();
        for src in ["9^9^9^9", "2^100000", "(-2)^100001", "10^400"] {
            let message = permanent_message(run(json!({ "expression": src })).await);
            assert!(message.contains("result is not finite"), "{src}: {message}");
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn hostile_expressions_are_invalid_and_fast() {
        let start = Instant::now();
        for src in [
            "(".repeat(100_000),
            "-".repeat(100_000),
            format!("{}1", "(".repeat(MAX_DEPTH + 1)),
            format!("{}1", "-".repeat(MAX_EXPRESSION_LEN - 1)),
        ] {
            assert!(Calculator.validate(&json!({ "expression": src })).is_err());
        }
        assert!(start.elapsed() < Duration::from_millis(200));
    }
}
