//! The calculator: lexer, parser and evaluator through one expression, and
//! the tool's arguments as a whole.

use serde_json::Value;

use super::Target;
use crate::tools::calculator_measure::measure;
use crate::tools::{Calculator, Tool, ToolError};

const DICTIONARY: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "(",
    ")",
    ",",
    " ",
    "1e308",
    "1e-320",
    ".5",
    "7.",
    "2.5E-2",
    "0",
    "-0",
    "pi",
    "PI",
    "e",
    "E",
    "sqrt(",
    "abs(",
    "min(",
    "max(",
    "floor(",
    "ceil(",
    "round(",
    "ln(",
    "log10(",
    "exp(",
    "sin(",
    "cos(",
    "tan(",
    "9007199254740993",
    "\u{3000}",
    "é",
    "((((((((",
    "))))))))",
    "--------",
    "^-",
    "1+1+1+1+1+1+1+1",
];

pub const EXPRESSION: Target = Target {
    name: "calculator",
    dictionary: DICTIONARY,
    max_len: 1200,
    generate: None,
    check: check_expression,
};

pub const ARGS: Target = Target {
    name: "calculator_args",
    dictionary: &[
        r#""expression":"#,
        r#""operation":"#,
        r#""a":"#,
        r#""b":"#,
        r#""add""#,
        r#""POW""#,
        r#""mod""#,
        r#""div""#,
        "1e308",
        "-1e308",
        "0",
        "18446744073709551616",
        "null",
        "[]",
    ],
    max_len: 512,
    generate: None,
    check: check_args,
};

/// The work is bounded by the input's size: the tree has at most one node
/// per token and one token per character that is not white space, the
/// evaluator recurses at most as deep as the tree, and the normalised
/// spelling is at most three characters per input character. The
/// normalised spelling parses to the same tree and spells itself the same
/// (parse -> serialise -> parse is stable). The value is finite or a
/// permanent math error.
fn check_expression(input: &[u8]) {
    let Ok(src) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(m) = measure(src) else {
        return;
    };
    let chars = src.chars().filter(|c| !c.is_whitespace()).count();
    assert!(
        m.tokens <= chars,
        "{} tokens from {chars} characters",
        m.tokens
    );
    assert!(
        m.nodes <= m.tokens,
        "{} nodes from {} tokens",
        m.nodes,
        m.tokens
    );
    assert!(
        m.depth <= m.nodes,
        "depth {} over {} nodes",
        m.depth,
        m.nodes
    );
    let spelled = m.normalised.chars().count();
    assert!(
        spelled <= 3 * chars,
        "normalised to {spelled} characters from {chars}"
    );
    match &m.value {
        Ok(x) => assert!(x.is_finite(), "non-finite value {x}"),
        Err(ToolError::Permanent(_)) => {}
        Err(e) => panic!("evaluation failed with {e:?}, not a math error"),
    }
    let again = measure(&m.normalised)
        .unwrap_or_else(|e| panic!("normalised {:?} does not parse: {e}", m.normalised));
    assert_eq!(again.tree, m.tree, "normalised {:?}", m.normalised);
    assert_eq!(again.normalised, m.normalised);
}

/// Any JSON arguments: `validate` and `call` never panic, agree (what
/// validates never fails as bad input when called), and a result is a
/// finite number with the normalised expression.
fn check_args(input: &[u8]) {
    let Ok(args) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    let valid = Calculator.validate(&args);
    let called = futures::executor::block_on(
        Calculator.call(&args, crate::tools::JobContext::new("fuzz", 0, "fuzz")),
    );
    match (valid, called) {
        (Ok(()), Ok(out)) => {
            assert!(out["result"].is_number(), "result {out}");
            assert!(out["expression"].is_string(), "result {out}");
        }
        (Ok(()), Err(ToolError::InvalidArgs(e))) => {
            panic!("validated arguments were refused when called: {e}")
        }
        (Err(ToolError::InvalidArgs(_)), Err(ToolError::InvalidArgs(_))) | (Ok(()), Err(_)) => {}
        (valid, called) => panic!("validate said {valid:?}, call said {called:?}"),
    }
}
