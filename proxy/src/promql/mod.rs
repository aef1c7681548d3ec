//! PromQL analysis: parsing and inspection of queries, and [`eval`]uation over data
//! fetched beforehand. Pure: no IO, no clock (but an evaluation's deadline), no global
//! state beyond the function registry `promql-parser` keeps.

pub mod eval;
pub mod grammar;
pub mod pushdown;
pub mod shape;
pub mod sketch_plan;

use std::sync::Once;

use promql_parser::label::Matchers;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, Function};
use promql_parser::util::{ExprVisitor, walk_expr};

/// Range functions the proxy serves from sketches. Prometheus has only the first.
pub const SKETCH_FUNCTIONS: [&str; 4] = [
    "quantile_over_time",
    "entropy_over_time",
    "l2_over_time",
    "distinct_over_time",
];

/// Functions this proxy adds to PromQL; Prometheus does not know them, so a query
/// using them can only be answered by the proxy itself.
pub const PROXY_FUNCTIONS: [&str; 3] = ["entropy_over_time", "l2_over_time", "distinct_over_time"];

/// PromQL's functions of one range vector and nothing else, which a plugin may serve and
/// a sketch rule may name besides `*_over_time` ones (the built-in `stats` plugin serves
/// `rate`, `increase`, `delta`, `changes` and `resets`).
pub const PROMQL_RANGE_FUNCTIONS: [&str; 8] = [
    "rate", "increase", "delta", "irate", "idelta", "changes", "resets", "deriv",
];

pub use grammar::{CustomFunction, Grammar};
pub use shape::{ShapeError, ShapeLimits};

/// A query or selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// What the parser said, without position (promql-parser does not report one).
    #[error("parse error: {message}")]
    Syntax {
        /// The parser's words.
        message: String,
    },
    /// Refused before parsing: too long or too deep.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

impl ParseError {
    fn syntax(message: impl Into<String>) -> Self {
        Self::Syntax {
            message: message.into(),
        }
    }

    /// What is wrong, without the "parse error" prefix.
    pub fn detail(&self) -> String {
        match self {
            Self::Syntax { message } => message.clone(),
            Self::Shape(e) => e.to_string(),
        }
    }
}

/// Makes `promql-parser` accept exactly the functions Prometheus 2.42 knows plus the
/// proxy's own. Idempotent; every parse entry point calls it.
pub(crate) fn register_functions() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut extra: Vec<Function> = PROXY_FUNCTIONS
            .iter()
            .map(|name| Function::new(name, vec![ValueType::Matrix], 0, ValueType::Vector, false))
            .collect();
        // Prometheus 2.42 still has holt_winters (renamed in 3.0); promql-parser dropped it.
        extra.push(Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        ));
        // Only fails on a clash with a built-in name, which the table above rules out;
        // a clash would surface as "unknown function" parse errors in the tests.
        let _ = parser::function::register_extra_functions(extra);
    });
}

/// Parses a PromQL expression the way Prometheus' `parser.ParseExpr` would, within the
/// default [`ShapeLimits`] (queries from the configuration, tests).
pub fn parse(query: &str) -> Result<Expr, ParseError> {
    parse_within(query, &ShapeLimits::default())
}

/// Parses a PromQL expression the way Prometheus' `parser.ParseExpr` would, once its
/// shape is within `limits`: nothing recursive runs on a query that is too deep.
pub fn parse_within(query: &str, limits: &ShapeLimits) -> Result<Expr, ParseError> {
    shape::check(query, limits)?;
    register_functions();
    if query.trim().is_empty() {
        // promql-parser says "invalid promql query"; Prometheus' wording is clearer.
        return Err(ParseError::syntax("no expression found in input"));
    }
    // promql-parser panics on some input (a duration past `Duration`'s range, found by
    // fuzzing); a query must get an error, never take its request down.
    let parsed = std::panic::catch_unwind(|| parser::parse(query)).unwrap_or_else(|_| {
        Err("the parser failed on this query (a number or duration out of range?)".to_owned())
    });
    let expr = parsed.map_err(ParseError::syntax)?;
    if uses_or_matchers(&expr) {
        // promql-parser knows `{a="1" or b="2"}` (Prometheus 3); 2.42's parser does not.
        return Err(ParseError::syntax(
            "unexpected identifier \"or\" in label matching, expected \",\" or \"}\"",
        ));
    }
    Ok(expr)
}

/// Whether any selector in `expr` has `or` groups.
fn uses_or_matchers(expr: &Expr) -> bool {
    struct Find(bool);
    impl ExprVisitor for Find {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, plan: &Expr) -> Result<bool, Self::Error> {
            let selector = match plan {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            self.0 |= selector.is_some_and(|vs| !vs.matchers.or_matchers.is_empty());
            Ok(!self.0)
        }
    }
    let mut find = Find(false);
    // The visitor is infallible.
    let _ = walk_expr(&mut find, expr);
    find.0
}

/// Parses a series selector (`match[]`), like Prometheus' `parser.ParseMetricSelector`:
/// only a bare instant-vector selector is accepted.
pub fn parse_selector(selector: &str) -> Result<Matchers, ParseError> {
    parse_selector_within(selector, &ShapeLimits::default())
}

/// [`parse_selector`] within `limits`.
pub fn parse_selector_within(selector: &str, limits: &ShapeLimits) -> Result<Matchers, ParseError> {
    match parse_within(selector, limits)? {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
            let mut matchers = vs.matchers;
            if let Some(name) = vs.name {
                matchers.matchers.push(promql_parser::label::Matcher::new(
                    promql_parser::label::MatchOp::Equal,
                    promql_parser::label::METRIC_NAME,
                    &name,
                ));
            }
            Ok(matchers)
        }
        other => Err(ParseError::syntax(format!(
            "expected a series selector such as up{{job=\"x\"}}, got {} expression",
            value_type_name(&other)
        ))),
    }
}

/// Whether `matchers` select a series whose label values `value_of` gives (`""` for a
/// missing label, as in Prometheus). Plain matchers must all hold, and with `or` groups
/// (`{a="1" or b="2"}`) one whole group too.
pub fn selects<'a>(matchers: &Matchers, value_of: impl Fn(&str) -> &'a str) -> bool {
    let all = |group: &[promql_parser::label::Matcher]| group.iter().all(|m| m.is_match(value_of(&m.name)));
    all(&matchers.matchers)
        && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|g| all(g)))
}

/// Whether a step's value may depend on data after the step: an `@` modifier or a
/// negative offset anywhere in `expr`.
pub fn reads_ahead(expr: &Expr) -> bool {
    struct Find(bool);
    impl ExprVisitor for Find {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let (at, offset) = match expr {
                Expr::VectorSelector(vs) => (&vs.at, &vs.offset),
                Expr::MatrixSelector(ms) => (&ms.vs.at, &ms.vs.offset),
                Expr::Subquery(sq) => (&sq.at, &sq.offset),
                _ => return Ok(true),
            };
            self.0 |= at.is_some() || matches!(offset, Some(parser::Offset::Neg(_)));
            Ok(!self.0)
        }
    }
    let mut find = Find(false);
    let _ = walk_expr(&mut find, expr);
    find.0
}

/// The matchers of every vector selector in `expr` (matrix selectors' included, the
/// metric name as a `__name__` matcher), like Prometheus' `parser.ExtractSelectors`.
pub fn selector_matchers(expr: &Expr) -> Vec<Matchers> {
    struct Collect(Vec<Matchers>);
    impl ExprVisitor for Collect {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let vs = match expr {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let mut matchers = vs.matchers.clone();
            if let Some(name) = &vs.name {
                let name = promql_parser::label::Matcher::new(
                    promql_parser::label::MatchOp::Equal,
                    promql_parser::label::METRIC_NAME,
                    name,
                );
                matchers.matchers.push(name);
            }
            self.0.push(matchers);
            Ok(true)
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = walk_expr(&mut collect, expr);
    collect.0
}

fn value_type_name(expr: &Expr) -> &'static str {
    match expr.value_type() {
        ValueType::Vector => "an instant vector",
        ValueType::Matrix => "a range vector",
        ValueType::Scalar => "a scalar",
        ValueType::String => "a string",
    }
}

#[cfg(test)]
mod tests;
