//! What one expression costs to parse and evaluate, for the fuzz target's
//! bounded-work property (`src/fuzz/calculator.rs`). Test builds only.

use super::expr::Expr;
use super::lexer::tokenize;
use super::parser::parse;
use crate::tools::ToolError;

/// The parse of one expression, measured.
#[derive(Debug)]
pub struct Measured {
    /// Tokens the lexer produced.
    pub tokens: usize,
    /// Nodes of the tree: the evaluator's steps.
    pub nodes: usize,
    /// Depth of the tree: the evaluator's deepest recursion.
    pub depth: usize,
    pub normalised: String,
    /// The tree, spelled out, to compare two parses.
    pub tree: String,
    pub value: Result<f64, ToolError>,
}

/// Parses and evaluates `src`, counting as it goes.
pub fn measure(src: &str) -> Result<Measured, ToolError> {
    let parsed = parse(src)?;
    let (nodes, depth) = size(&parsed.expr);
    Ok(Measured {
        tokens: tokenize(src)?.len(),
        nodes,
        depth,
        tree: format!("{:?}", parsed.expr),
        value: parsed.expr.eval(),
        normalised: parsed.normalised,
    })
}

/// Nodes and depth of a tree.
fn size(expr: &Expr) -> (usize, usize) {
    match expr {
        Expr::Num(_) => (1, 1),
        Expr::Neg(inner) => {
            let (n, d) = size(inner);
            (n + 1, d + 1)
        }
        Expr::Binary(_, lhs, rhs) => {
            let (ln, ld) = size(lhs);
            let (rn, rd) = size(rhs);
            (ln + rn + 1, ld.max(rd) + 1)
        }
        Expr::Call(_, args) => args
            .iter()
            .map(size)
            .fold((1, 1), |(n, d), (an, ad)| (n + an, d.max(ad + 1))),
    }
}
