//! Which calls of a query sketches could answer (issue 7's planner, first part). Pure
//! analysis of the AST: the engine asks the sketch store about each candidate at
//! evaluation time, and everything above a call is evaluated as usual.
//!
//! A call is a candidate when:
//! - its function is served by a loaded plugin (`served`);
//! - its range argument is a matrix selector (a subquery's points are computed, not
//!   ingested, so no sketch holds them);
//! - its other arguments are number literals, so one plugin call per series can answer
//!   every step (`quantile_over_time(0.99, m[1h])` yes, `quantile_over_time(scalar(x), …)` no);
//! - its window is at least `min_window_ms`: below that the exact path reads few samples
//!   and is as fast as a plugin call (the cost rule).

use promql_parser::parser::{AtModifier, Expr, VectorSelector};

/// The cost rule: windows shorter than this are answered exactly. Ten minutes at a
/// 15 s scrape is 40 samples, which the exact path reads in about the time of one
/// plugin call.
pub const MIN_WINDOW_MS: i64 = 600_000;

use super::eval::{SelectorId, offset_ms};

/// One call sketches could answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SketchCall<'e> {
    /// The function, e.g. `quantile_over_time`.
    pub function: &'static str,
    /// Its selector (ids match the engine's data).
    pub selector: &'e VectorSelector,
    /// The selector's id.
    pub id: SelectorId,
    /// The range, ms.
    pub window_ms: i64,
    /// The selector's offset, ms.
    pub offset_ms: i64,
    /// The selector's `@`, if any.
    pub at: Option<&'e AtModifier>,
    /// The constant scalar arguments, in order, without the range argument.
    pub args: Vec<f64>,
    /// Inside a subquery: its windows end at the subquery's steps, not the query's.
    pub in_subquery: bool,
}

/// Why a call of a served function is left to the exact path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exact {
    /// Its range argument is a subquery.
    Subquery,
    /// A scalar argument is computed, not a literal.
    ComputedArgument,
    /// Its window is shorter than the cost rule's minimum.
    ShortWindow,
}

/// The candidates in `expr`, in order of appearance, and the calls of served functions
/// left to the exact path with why.
pub fn sketch_calls<'e>(
    expr: &'e Expr,
    served: &dyn Fn(&str) -> bool,
    min_window_ms: i64,
) -> (Vec<SketchCall<'e>>, Vec<(&'static str, Exact)>) {
    let mut found = (Vec::new(), Vec::new());
    walk(expr, served, min_window_ms, false, &mut found);
    found
}

type Found<'e> = (Vec<SketchCall<'e>>, Vec<(&'static str, Exact)>);

fn walk<'e>(
    expr: &'e Expr,
    served: &dyn Fn(&str) -> bool,
    min_window_ms: i64,
    in_subquery: bool,
    found: &mut Found<'e>,
) {
    match expr {
        Expr::Call(call) => {
            let name = call.func.name;
            if served(name) {
                match candidate(call, min_window_ms) {
                    Ok(c) => found.0.push(SketchCall { in_subquery, ..c }),
                    Err(why) => found.1.push((name, why)),
                }
            }
            for arg in &call.args.args {
                walk(arg, served, min_window_ms, in_subquery, found);
            }
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, served, min_window_ms, in_subquery, found);
            }
            walk(&a.expr, served, min_window_ms, in_subquery, found);
        }
        Expr::Binary(b) => {
            walk(&b.lhs, served, min_window_ms, in_subquery, found);
            walk(&b.rhs, served, min_window_ms, in_subquery, found);
        }
        Expr::Unary(u) => walk(&u.expr, served, min_window_ms, in_subquery, found),
        Expr::Paren(p) => walk(&p.expr, served, min_window_ms, in_subquery, found),
        Expr::Subquery(s) => walk(&s.expr, served, min_window_ms, true, found),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

fn candidate<'e>(call: &'e promql_parser::parser::Call, min_window_ms: i64) -> Result<SketchCall<'e>, Exact> {
    let mut selector = None;
    let mut args = Vec::new();
    for arg in &call.args.args {
        match unparen(arg) {
            Expr::MatrixSelector(ms) => selector = Some(ms),
            Expr::Subquery(_) => return Err(Exact::Subquery),
            other => args.push(literal(other).ok_or(Exact::ComputedArgument)?),
        }
    }
    // The parser guarantees a range argument for a range function.
    let ms = selector.ok_or(Exact::ComputedArgument)?;
    let window_ms = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
    if window_ms < min_window_ms {
        return Err(Exact::ShortWindow);
    }
    Ok(SketchCall {
        function: call.func.name,
        selector: &ms.vs,
        id: SelectorId::of(&ms.vs),
        window_ms,
        offset_ms: offset_ms(ms.vs.offset.as_ref()),
        at: ms.vs.at.as_ref(),
        args,
        in_subquery: false,
    })
}

fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// A number literal, possibly negated or parenthesized.
fn literal(expr: &Expr) -> Option<f64> {
    match unparen(expr) {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Unary(u) => literal(&u.expr).map(|v| -v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Exact, sketch_calls};
    use crate::promql;

    const TEN_MINUTES: i64 = 600_000;

    fn served(name: &str) -> bool {
        promql::SKETCH_FUNCTIONS.contains(&name)
    }

    /// (query, candidates as (function, window s, offset s, has @, args), exact calls)
    #[expect(clippy::type_complexity, reason = "a table")]
    const CASES: &[(&str, &[(&str, i64, i64, bool, &[f64])], &[(&str, Exact)])] = &[
        (
            "quantile_over_time(0.99, m[1h])",
            &[("quantile_over_time", 3600, 0, false, &[0.99])],
            &[],
        ),
        (
            "sum by (job) (quantile_over_time(0.99, m[1h])) > 3",
            &[("quantile_over_time", 3600, 0, false, &[0.99])],
            &[],
        ),
        (
            "entropy_over_time(m[1h] offset 1d) / on(job) group_left l2_over_time(n[30m] @ 1700000000)",
            &[
                ("entropy_over_time", 3600, 86400, false, &[]),
                ("l2_over_time", 1800, 0, true, &[]),
            ],
            &[],
        ),
        (
            "distinct_over_time((m[1h]))",
            &[("distinct_over_time", 3600, 0, false, &[])],
            &[],
        ),
        (
            "quantile_over_time(-(0.5), m[1h])",
            &[("quantile_over_time", 3600, 0, false, &[-0.5])],
            &[],
        ),
        (
            "quantile_over_time(scalar(q), m[1h])",
            &[],
            &[("quantile_over_time", Exact::ComputedArgument)],
        ),
        (
            "distinct_over_time(rate(m[5m])[1h:1m])",
            &[],
            &[("distinct_over_time", Exact::Subquery)],
        ),
        (
            "entropy_over_time(m[5m])",
            &[],
            &[("entropy_over_time", Exact::ShortWindow)],
        ),
        // Inside a subquery the call is still a candidate: its windows are regular.
        (
            "max_over_time(distinct_over_time(m[1h])[1d:1h])",
            &[("distinct_over_time", 3600, 0, false, &[])],
            &[],
        ),
        ("rate(m[1h]) + avg_over_time(m[1h])", &[], &[]),
    ];

    #[test]
    fn candidates_follow_the_rules() {
        for (query, want, exact) in CASES {
            let expr = promql::parse(query).unwrap();
            let (calls, left) = sketch_calls(&expr, &served, TEN_MINUTES);
            let got: Vec<(&str, i64, i64, bool, Vec<f64>)> = calls
                .iter()
                .map(|c| {
                    (
                        c.function,
                        c.window_ms / 1000,
                        c.offset_ms / 1000,
                        c.at.is_some(),
                        c.args.clone(),
                    )
                })
                .collect();
            let want: Vec<(&str, i64, i64, bool, Vec<f64>)> =
                want.iter().map(|w| (w.0, w.1, w.2, w.3, w.4.to_vec())).collect();
            assert_eq!(got, want, "{query}");
            assert_eq!(&left, exact, "{query}");
        }
    }
}
