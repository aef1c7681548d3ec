//! Evaluating queries over in-memory series, for the tests of `eval` and of the
//! modules built on it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::value::{Labels, Point, Series};
use super::{Answer, Data, EvalError, Interrupt, Limits, Precomputed, Range, STALE_NAN_BITS, evaluate, plan};
use crate::promql;

pub(crate) const LOOKBACK_MS: i64 = 300_000;

/// `m` with `values` one every 10 s from t=0 (`None` is a stale marker).
pub(crate) fn series(labels: &[(&str, &str)], values: &[Option<f64>]) -> Series {
    Series {
        labels: Labels::from_pairs(labels.iter().copied()),
        points: values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                t: i as i64 * 10_000,
                v: v.unwrap_or(f64::from_bits(STALE_NAN_BITS)),
            })
            .collect(),
    }
}

/// What every selector of `expr` selects from `store`, as a source would answer.
pub(crate) fn data_for(expr: &promql_parser::parser::Expr, range: &Range, store: &[Series]) -> Data {
    data_for_except(expr, range, store, &Precomputed::default())
}

/// [`data_for`], but for the `precomputed` subtrees.
pub(crate) fn data_for_except(
    expr: &promql_parser::parser::Expr,
    range: &Range,
    store: &[Series],
    precomputed: &Precomputed,
) -> Data {
    plan::needs_except(expr, range, LOOKBACK_MS, precomputed)
        .into_iter()
        .map(|need| {
            let picked = store
                .iter()
                .filter(|s| promql::selects(&need.matchers, |name| s.labels.get(name)))
                .map(|s| Series {
                    labels: s.labels.clone(),
                    points: s
                        .points
                        .iter()
                        .filter(|p| p.t >= need.start_ms && p.t <= need.end_ms)
                        .copied()
                        .collect(),
                })
                .collect();
            (need.id, picked)
        })
        .collect()
}

pub(crate) fn interrupt() -> Interrupt {
    Interrupt {
        deadline: Instant::now() + Duration::from_secs(60),
        cancelled: Arc::new(AtomicBool::new(false)),
    }
}

pub(crate) fn run(
    query: &str,
    range: Range,
    store: &[Series],
    max_samples: usize,
) -> Result<Answer, EvalError> {
    let expr = promql::parse(query).unwrap();
    let data = data_for(&expr, &range, store);
    let limits = Limits {
        max_samples,
        lookback_ms: LOOKBACK_MS,
    };
    evaluate(&expr, range, &data, &limits, &interrupt())
}
