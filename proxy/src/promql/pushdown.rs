//! Which parts of a query endpoints can answer alone (issue 20's planner, first part).
//! Pure analysis of the AST; the executor sends each pushed subquery to every endpoint
//! and merges the answers as [`Merge`] says, and the rest of the query is evaluated in
//! the proxy over those answers.
//!
//! It rests on one assumption, which the operator declares by giving endpoints external
//! labels that tell them apart (as Thanos does): **every series lives wholly on one
//! endpoint** (replicas aside, which are deduplicated as today). Then:
//!
//! - a **per-series** subtree (each output series computed from one input series:
//!   range functions, per-series math, comparisons with a literal, subqueries of such)
//!   answered by each endpoint is exactly that endpoint's share of the answer, and the
//!   shares are concatenated ([`Merge::Concat`]);
//! - an **aggregation** of a per-series subtree whose operator decomposes is pushed as
//!   partial aggregates, merged with the same grouping: `sum`, `min`, `max`, `group`
//!   by themselves, `count` as a sum of counts, `topk`/`bottomk` by re-ranking each
//!   endpoint's k, `avg` as each endpoint's mean weighted by its count (a sum could
//!   overflow where Prometheus' running mean does not), `stddev`/`stdvar` from each
//!   endpoint's count, mean and variance (Chan's parallel form of the Welford update
//!   Prometheus runs; a sum of squares would cancel catastrophically). An aggregation
//!   is pushed only when its operand cannot hold two series that differ in the metric
//!   name alone once it is dropped (a bare selector, or every selector naming one
//!   metric): Prometheus fails such a query, and the partial aggregates would hide it;
//! - anything else (`quantile`, `count_values`, `histogram_quantile`, `absent`, `sort`,
//!   binary operations between two vectors, which may match series of different
//!   endpoints) is evaluated in the proxy, and its per-series parts are pushed.
//!
//! Not per-series, whatever the function: a selector matching on an external label, a
//! `label_replace`/`label_join` that writes or reads one (the endpoint stores none),
//! and a call with a computed scalar argument. The proxy's own functions are pushed only to endpoints that know
//! them (other sketch-proxies).

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDDEV, T_STDVAR, T_SUM, T_TOPK, TokenId, TokenType,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

pub use merge::{Answers, merge};

/// What the endpoints are.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// The names of every endpoint's external labels.
    pub external_labels: Vec<String>,
    /// The proxy's own functions (the sketch functions and custom plugins') every
    /// endpoint knows: none, unless every endpoint is a sketch-proxy.
    pub proxy_functions: Vec<String>,
    /// Whether a per-series subtree is pushed on its own, not only as the operand of
    /// a pushed aggregation. Its answer holds about as many points as the steps asked,
    /// which beats reading raw data as JSON (a query API) or computing it from raw
    /// data (a sketch-proxy answers from sketches); but a Prometheus sends compressed
    /// chunks by remote read faster than it evaluates and encodes the same points as
    /// JSON (`rate` 2.4×, `quantile_over_time` 2.7× slower pushed: docs/benchmarks.md).
    pub per_series_parts: bool,
}

/// How the endpoints' answers to a pushed subquery become the subtree's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Each endpoint's series, together.
    Concat,
    /// The partial aggregates aggregated again by the same operator and grouping
    /// (`count`'s by `sum`).
    Again(TokenId),
    /// Each endpoint's `topk`/`bottomk`, ranked again.
    Rank(TokenId),
    /// `avg` from the pushed `sum` and `count`.
    Avg,
    /// `stddev`/`stdvar` from the pushed `count`, `sum` and sum of squares.
    Moments(TokenId),
}

/// One subtree the endpoints answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed<'e> {
    /// The subtree's node (what [`crate::promql::eval::Precomputed`] is keyed by).
    pub node: &'e Expr,
    /// The subtree as the query has it.
    pub subtree: String,
    /// What is sent to each endpoint: the subtree, or the partial aggregates it is
    /// made of.
    pub queries: Vec<String>,
    /// How the answers merge.
    pub merge: Merge,
    /// Inside a subquery: asked at the subquery's steps, not the query's.
    pub in_subquery: bool,
    /// An aggregation's grouping (`None`: not an aggregation).
    pub grouping: Option<Grouping>,
    /// `topk`/`bottomk`'s k.
    pub k: Option<usize>,
}

/// An aggregation's grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// `by (…)`, or none given (`by ()`).
    By(Vec<String>),
    /// `without (…)`.
    Without(Vec<String>),
}

/// The largest subtrees of `expr` the endpoints can answer, in order of appearance.
pub fn plan<'e>(expr: &'e Expr, topology: &Topology) -> Vec<Pushed<'e>> {
    let mut pushed = Vec::new();
    walk(expr, topology, false, &mut pushed);
    pushed
}

fn walk<'e>(expr: &'e Expr, topology: &Topology, in_subquery: bool, pushed: &mut Vec<Pushed<'e>>) {
    if matches!(expr, Expr::NumberLiteral(_) | Expr::StringLiteral(_)) {
        return;
    }
    // A range vector alone is no query an endpoint answers: it is read as raw data.
    let instant = !matches!(expr, Expr::MatrixSelector(_) | Expr::Subquery(_));
    if instant && per_series(expr, topology) {
        if !topology.per_series_parts {
            // Its parts are per-series too: nothing below is pushed either.
            return;
        }
        pushed.push(Pushed {
            node: expr,
            subtree: expr.to_string(),
            queries: vec![expr.to_string()],
            merge: Merge::Concat,
            in_subquery,
            grouping: None,
            k: None,
        });
        return;
    }
    if let Expr::Aggregate(agg) = expr
        && let Some(p) = partial_aggregate(expr, agg, topology, in_subquery)
    {
        pushed.push(p);
        return;
    }
    match expr {
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                walk(param, topology, in_subquery, pushed);
            }
            walk(&agg.expr, topology, in_subquery, pushed);
        }
        Expr::Unary(u) => walk(&u.expr, topology, in_subquery, pushed),
        Expr::Binary(b) => {
            walk(&b.lhs, topology, in_subquery, pushed);
            walk(&b.rhs, topology, in_subquery, pushed);
        }
        Expr::Paren(p) => walk(&p.expr, topology, in_subquery, pushed),
        Expr::Subquery(s) => walk(&s.expr, topology, true, pushed),
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk(arg, topology, in_subquery, pushed);
            }
        }
        _ => {}
    }
}

/// Functions whose every output series comes from one input series, given literal
/// scalar arguments.
const PER_SERIES_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "sgn",
    "sin",
    "sinh",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "timestamp",
    "year",
];

/// Whether every output series of `expr` is computed from one series of one selector.
fn per_series(expr: &Expr, topology: &Topology) -> bool {
    match expr {
        Expr::VectorSelector(vs) => !on_external(vs, topology),
        Expr::MatrixSelector(ms) => !on_external(&ms.vs, topology),
        Expr::Paren(p) => per_series(&p.expr, topology),
        Expr::Unary(u) => per_series(&u.expr, topology),
        Expr::Subquery(s) => per_series(&s.expr, topology),
        Expr::Binary(b) => match (literal(&b.lhs), literal(&b.rhs)) {
            (true, false) => per_series(&b.rhs, topology),
            (false, true) => per_series(&b.lhs, topology),
            _ => false,
        },
        Expr::Call(call) => {
            let name = call.func.name;
            let known =
                PER_SERIES_FUNCTIONS.contains(&name) || topology.proxy_functions.iter().any(|f| f == name);
            let mut vectors = 0;
            for arg in &call.args.args {
                if literal(arg) {
                    continue;
                }
                if !per_series(arg, topology) {
                    return false;
                }
                vectors += 1;
            }
            known && vectors == 1 && !touches_external(name, &call.args.args, topology)
        }
        _ => false,
    }
}

/// Whether a selector matches on an external label: the endpoints store none, so the
/// proxy checks those matchers (as it does for raw reads) and the selector is read.
fn on_external(vs: &promql_parser::parser::VectorSelector, topology: &Topology) -> bool {
    vs.matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .any(|m| topology.external_labels.contains(&m.name))
}

/// Whether a `label_replace`/`label_join` writes or reads an external label.
fn touches_external(function: &str, args: &[Box<Expr>], topology: &Topology) -> bool {
    let names: Vec<&str> = match function {
        // label_replace(v, dst, replacement, src, regex)
        "label_replace" => [1, 3].iter().filter_map(|&i| string_arg(args, i)).collect(),
        // label_join(v, dst, separator, src...)
        "label_join" => std::iter::once(1)
            .chain(3..args.len())
            .filter_map(|i| string_arg(args, i))
            .collect(),
        _ => return false,
    };
    names
        .iter()
        .any(|n| topology.external_labels.iter().any(|e| e == n))
}

fn string_arg(args: &[Box<Expr>], i: usize) -> Option<&str> {
    match args.get(i).map(|a| unparen(a)) {
        Some(Expr::StringLiteral(s)) => Some(s.val.as_str()),
        _ => None,
    }
}

fn literal(expr: &Expr) -> bool {
    matches!(unparen(expr), Expr::NumberLiteral(_) | Expr::StringLiteral(_))
}

fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// `agg` as partial aggregates, when its operator decomposes and its operand is
/// per-series.
fn partial_aggregate<'e>(
    node: &'e Expr,
    agg: &AggregateExpr,
    topology: &Topology,
    in_subquery: bool,
) -> Option<Pushed<'e>> {
    if !per_series(&agg.expr, topology)
        || agg.param.as_deref().is_some_and(|p| !literal(p))
        || !names_kept_apart(&agg.expr)
    {
        return None;
    }
    let op = agg.op.id();
    let whole = Expr::Aggregate(agg.clone()).to_string();
    let with_op = |name: &str, operand: &Expr| {
        let mut part = agg.clone();
        part.op = TokenType::new(token_of(name)?);
        part.expr = Box::new(operand.clone());
        Some(Expr::Aggregate(part).to_string())
    };
    let (queries, merge) = match op {
        T_SUM | T_MIN | T_MAX | T_GROUP | T_COUNT => (vec![whole.clone()], Merge::Again(op)),
        T_TOPK | T_BOTTOMK => (vec![whole.clone()], Merge::Rank(op)),
        T_AVG => (
            vec![with_op("avg", &agg.expr)?, with_op("count", &agg.expr)?],
            Merge::Avg,
        ),
        T_STDDEV | T_STDVAR => (
            vec![
                with_op("count", &agg.expr)?,
                with_op("avg", &agg.expr)?,
                with_op("stdvar", &agg.expr)?,
            ],
            Merge::Moments(op),
        ),
        _ => return None,
    };
    let grouping = match &agg.modifier {
        Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels.clone()),
        Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
        None => Grouping::By(Vec::new()),
    };
    let k = match agg.param.as_deref().map(unparen) {
        Some(Expr::NumberLiteral(n)) if matches!(op, T_TOPK | T_BOTTOMK) => {
            // As Prometheus: k is truncated, and below 1 selects nothing.
            Some(if n.val >= 1.0 { n.val.min(1e9) as usize } else { 0 })
        }
        _ => None,
    };
    Some(Pushed {
        node,
        subtree: whole,
        queries,
        merge,
        in_subquery,
        grouping: Some(grouping),
        k,
    })
}

fn token_of(name: &str) -> Option<TokenId> {
    match name {
        "avg" => Some(T_AVG),
        "count" => Some(T_COUNT),
        "stdvar" => Some(T_STDVAR),
        _ => None,
    }
}

/// Whether no two series of `expr` can differ in the metric name alone once a
/// function or an operator drops it: `expr` is a bare selector (which keeps the
/// name), or each of its selectors names one metric.
fn names_kept_apart(expr: &Expr) -> bool {
    if let Expr::VectorSelector(_) = unparen(expr) {
        return true;
    }
    super::selector_matchers(expr).iter().all(|m| {
        m.matchers
            .iter()
            .any(|m| m.name == "__name__" && m.op == promql_parser::label::MatchOp::Equal)
    })
}

mod merge;
#[cfg(test)]
mod tests;
