//! Local evaluation of a query: plan what raw data it needs, fetch it from the
//! [`Source`], evaluate with [`promql::eval`] on a blocking thread, and encode the
//! answer as Prometheus does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use promql_parser::parser::Expr;

use crate::promql::eval::value::{Labels, Point, Series};
use crate::promql::eval::{
    self, Answer, Data, EvalError, Interrupt, Limits, Range, Served, SketchUse, Sketches, plan,
};
use crate::promql::sketch_plan::MIN_WINDOW_MS;
use crate::source::{Selection, Source, SourceError};

/// Limits on one local evaluation (the `query:` configuration section).
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Most samples held at once.
    pub max_samples: usize,
    /// Most series all selectors together may select.
    pub max_series: usize,
    /// How far back an instant vector looks.
    pub lookback: Duration,
    /// The longest a query may run.
    pub timeout: Duration,
}

/// Why a local evaluation gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The raw data could not be fetched.
    #[error("fetching raw data: {0}")]
    Source(#[from] SourceError),
    /// The selectors select too many series.
    #[error("the query selects more than {limit} series (query.max_series)")]
    TooManySeries {
        /// The limit.
        limit: usize,
    },
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// The evaluation thread died (a bug).
    #[error("evaluation failed: {0}")]
    Internal(String),
}

/// Sets the flag when dropped unless disarmed: the handler's future is dropped when the
/// client goes away, and the evaluation thread sees the flag.
#[derive(Debug)]
struct CancelOnDrop(Arc<AtomicBool>, bool);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.1 {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Evaluates `expr` over `range` with data from `source`, giving up after `timeout`
/// (the smaller of the request's and the configured one).
/// `canceled` counts evaluations stopped because the client went away (nobody else
/// sees their end).
pub async fn evaluate(
    source: &dyn Source,
    expr: Arc<Expr>,
    range: Range,
    limits: &QueryLimits,
    timeout: Duration,
    canceled: Counter,
    sketches: Option<Arc<dyn Sketches>>,
) -> Result<(Answer, Served), QueryError> {
    let deadline = Instant::now() + timeout;
    let lookback_ms = i64::try_from(limits.lookback.as_millis()).unwrap_or(i64::MAX);
    let needs = plan::needs(&expr, &range, lookback_ms);
    let selections: Vec<Selection> = needs
        .iter()
        .map(|n| Selection {
            matchers: n.matchers.clone(),
            start_ms: n.start_ms,
            end_ms: n.end_ms,
        })
        .collect();
    let fetched = if selections.is_empty() {
        Vec::new()
    } else {
        match tokio::time::timeout_at(deadline.into(), source.select(&selections)).await {
            // Past the remote-read sample cap is past the evaluation's too: same error.
            Ok(Err(SourceError::TooMuch { what: "samples", .. })) => {
                return Err(EvalError::TooManySamples.into());
            }
            Ok(result) => result?,
            Err(_) => return Err(EvalError::Timeout.into()),
        }
    };
    let total: usize = fetched.iter().map(Vec::len).sum();
    if total > limits.max_series {
        return Err(QueryError::TooManySeries {
            limit: limits.max_series,
        });
    }
    let mut data: Data = HashMap::with_capacity(needs.len());
    for (need, series) in needs.iter().zip(fetched) {
        let converted = series
            .into_iter()
            .map(|s| Series {
                labels: Labels::from_sorted(s.labels),
                points: s
                    .samples
                    .into_iter()
                    .map(|p| Point {
                        t: p.timestamp,
                        v: p.value,
                    })
                    .collect(),
            })
            .collect();
        data.insert(need.id, converted);
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut guard = CancelOnDrop(cancelled.clone(), true);
    let interrupt = Interrupt { deadline, cancelled };
    let eval_limits = Limits {
        max_samples: limits.max_samples,
        lookback_ms,
    };
    let task = tokio::task::spawn_blocking(move || {
        let using = sketches.as_deref().map(|sketches| SketchUse {
            sketches,
            min_window_ms: MIN_WINDOW_MS,
        });
        let result = eval::evaluate_with(&expr, range, &data, &eval_limits, &interrupt, using);
        if matches!(result, Err(EvalError::Canceled)) {
            canceled.inc();
        }
        result
    });
    let result = task.await.map_err(|e| QueryError::Internal(e.to_string()));
    guard.1 = false;
    Ok(result??)
}
