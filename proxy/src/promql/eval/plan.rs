//! Which raw data a query needs: every selector with the time range Prometheus'
//! `getTimeRangesForSelector` would read, so a source fetches only that.

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{AtModifier, Expr, VectorSelector};

use super::{Precomputed, Range, SelectorId, at_ms, offset_ms};

/// One selector's data need.
#[derive(Debug, Clone)]
pub struct Need {
    /// Which selector in the expression.
    pub id: SelectorId,
    /// Its matchers, metric name included as `__name__`.
    pub matchers: Matchers,
    /// Inclusive start, ms.
    pub start_ms: i64,
    /// Inclusive end, ms.
    pub end_ms: i64,
}

/// Subqueries around a selector: summed offsets and ranges, reset by an `@`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Around {
    offset: i64,
    range: i64,
    at: Option<i64>,
}

/// The data needs of `expr` evaluated over `range` with `lookback_ms`.
pub fn needs(expr: &Expr, range: &Range, lookback_ms: i64) -> Vec<Need> {
    needs_except(expr, range, lookback_ms, &Precomputed::default())
}

/// [`needs`], but for the subtrees whose answers are `precomputed`.
pub fn needs_except(expr: &Expr, range: &Range, lookback_ms: i64, precomputed: &Precomputed) -> Vec<Need> {
    let mut out = Vec::new();
    let mut walker = Walker {
        range,
        lookback: lookback_ms,
        precomputed,
        out: &mut out,
    };
    walker.walk(expr, Around::default());
    out
}

struct Walker<'a> {
    range: &'a Range,
    lookback: i64,
    precomputed: &'a Precomputed,
    out: &'a mut Vec<Need>,
}

impl Walker<'_> {
    fn walk(&mut self, expr: &Expr, around: Around) {
        // Outside subqueries, a precomputed node's selectors are not read.
        if around == Around::default() && self.precomputed.get(expr).is_some() {
            return;
        }
        walk(expr, self.range, self.lookback, around, self);
    }
}

fn walk(expr: &Expr, range: &Range, lookback: i64, around: Around, out: &mut Walker<'_>) {
    match expr {
        Expr::VectorSelector(vs) => out.out.push(need(vs, range, around, lookback, 0)),
        Expr::MatrixSelector(ms) => {
            let window = i64::try_from(ms.range.as_millis()).unwrap_or(i64::MAX);
            out.out.push(need(&ms.vs, range, around, lookback, window));
        }
        Expr::Subquery(sq) => {
            let offset = offset_ms(sq.offset.as_ref());
            let window = i64::try_from(sq.range.as_millis()).unwrap_or(i64::MAX);
            let inner = match resolve_at(sq.at.as_ref(), range) {
                Some(at) => Around {
                    offset,
                    range: window,
                    at: Some(at),
                },
                None => Around {
                    offset: around.offset + offset,
                    range: around.range + window,
                    at: around.at,
                },
            };
            out.walk(&sq.expr, inner);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                out.walk(p, around);
            }
            out.walk(&a.expr, around);
        }
        Expr::Unary(u) => out.walk(&u.expr, around),
        Expr::Binary(b) => {
            out.walk(&b.lhs, around);
            out.walk(&b.rhs, around);
        }
        Expr::Paren(p) => out.walk(&p.expr, around),
        Expr::Call(c) => {
            for arg in &c.args.args {
                out.walk(arg, around);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn resolve_at(at: Option<&AtModifier>, range: &Range) -> Option<i64> {
    at.map(|at| at_ms(at, range))
}

fn need(vs: &VectorSelector, range: &Range, around: Around, lookback: i64, window: i64) -> Need {
    let (mut start, mut end) = match around.at {
        Some(at) => (at, at),
        None => (range.start_ms, range.end_ms),
    };
    match resolve_at(vs.at.as_ref(), range) {
        Some(at) => (start, end) = (at, at),
        None => {
            start = start.saturating_sub(around.offset).saturating_sub(around.range);
            end = end.saturating_sub(around.offset);
        }
    }
    start = start.saturating_sub(if window == 0 { lookback } else { window });
    let offset = offset_ms(vs.offset.as_ref());
    Need {
        id: SelectorId::of(vs),
        matchers: selector_matchers(vs),
        start_ms: start.saturating_sub(offset),
        end_ms: end.saturating_sub(offset),
    }
}

/// The selector's matchers with its metric name as a `__name__` matcher.
pub fn selector_matchers(vs: &VectorSelector) -> Matchers {
    let mut matchers = vs.matchers.clone();
    if let Some(name) = &vs.name {
        matchers
            .matchers
            .push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    matchers
}
