//! Local evaluation of a query: plan what raw data it needs, fetch it from the
//! [`Source`], evaluate with [`promql::eval`] on a blocking thread, and encode the
//! answer as Prometheus does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use promql_parser::parser::Expr;
use tracing::Instrument as _;

use crate::promql::eval::SelectorId;
use crate::promql::eval::value::{Labels, Point, Series};
use crate::promql::eval::{
    self, Answer, Data, EvalError, Interrupt, Limits, Precomputed, Range, Served, SketchUse, Sketches, Stats,
    plan,
};
use crate::promql::pushdown;
use crate::promql::sketch_plan;
use crate::source::{ReadScope, Selection, Source, SourceError};

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
    /// Whether parts of the query go to the endpoints (`query.push_down`).
    pub push_down: bool,
    /// The proxy's own functions (built-in and custom), pushed to sketch-proxy
    /// endpoints; filled only with `push_down`.
    pub own_functions: Vec<String>,
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

/// Where an evaluation reads raw data, and whether it may leave failing endpoints out.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// The source.
    pub source: &'a dyn Source,
    /// `partial_response`, and the endpoints left out.
    pub partial: &'a ReadScope,
}

/// Something the evaluation thread keeps until it ends (a concurrency slot).
pub type Held = Arc<dyn std::any::Any + Send + Sync>;

/// Evaluates `expr` over `range` with data from `reader`, giving up after `timeout`
/// (the smaller of the request's and the configured one).
/// `canceled` counts evaluations stopped because the client went away (nobody else
/// sees their end). `held` is dropped when the evaluation ends, even after its caller
/// went away.
#[expect(
    clippy::too_many_arguments,
    reason = "one evaluation's inputs, each passed once"
)]
pub async fn evaluate(
    reader: Reader<'_>,
    expr: Arc<Expr>,
    range: Range,
    limits: &QueryLimits,
    timeout: Duration,
    canceled: Counter,
    sketches: Option<Arc<dyn Sketches>>,
    held: Option<Held>,
) -> Result<(Answer, Served), QueryError> {
    let deadline = Instant::now() + timeout;
    let mut stats = Stats::default();
    let lookback_ms = i64::try_from(limits.lookback.as_millis()).unwrap_or(i64::MAX);
    let mut pushed = Vec::new();
    let precomputed = if limits.push_down {
        let started = Instant::now();
        let precomputed = push_down(reader, &expr, range, &limits.own_functions, deadline, &mut pushed)
            .instrument(tracing::info_span!("push_down"))
            .await?;
        stats.fetch_seconds += started.elapsed().as_secs_f64();
        precomputed
    } else {
        Precomputed::default()
    };
    let needs = plan::needs_except(&expr, &range, lookback_ms, &precomputed);
    let selections: Vec<Selection> = needs
        .iter()
        .map(|n| Selection {
            matchers: n.matchers.clone(),
            start_ms: n.start_ms,
            end_ms: n.end_ms,
        })
        .collect();
    let mut data: Data = HashMap::with_capacity(needs.len());
    if let Some(sketches) = &sketches {
        let started = Instant::now();
        let covered = sketch_covered(reader, &expr, range, &needs, &selections, sketches, deadline)
            .instrument(tracing::info_span!("sketch_plan"))
            .await;
        for (id, series) in covered {
            data.insert(id, series);
        }
        stats.sketch_seconds = started.elapsed().as_secs_f64();
    }
    let unfetched: HashSet<SelectorId> = data.keys().copied().collect();
    let missing: Vec<usize> = (0..needs.len())
        .filter(|&i| !unfetched.contains(&needs[i].id))
        .collect();
    fetch(
        reader,
        &needs,
        &selections,
        &missing,
        deadline,
        &mut data,
        &mut stats,
    )
    .await?;
    check_series(&data, limits)?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let mut guard = CancelOnDrop(cancelled.clone(), true);
    let run = Run {
        expr,
        range,
        interrupt: Interrupt { deadline, cancelled },
        limits: Limits {
            max_samples: limits.max_samples,
            lookback_ms,
        },
        sketches,
        canceled,
        precomputed: Arc::new(precomputed),
        _held: held,
    };
    let started = Instant::now();
    let (result, run, mut data) = run.spawn(data, unfetched).await?;
    stats.eval_seconds += started.elapsed().as_secs_f64();
    let result = match result {
        // The sketches missed a series whose raw data was skipped: read it and evaluate
        // again, so the answer never silently lacks the series.
        Err(EvalError::SketchMiss) => {
            tracing::info!("a sketch expected to answer did not; evaluating again over raw data");
            let skipped: Vec<usize> = (0..needs.len()).filter(|&i| !missing.contains(&i)).collect();
            fetch(
                reader,
                &needs,
                &selections,
                &skipped,
                deadline,
                &mut data,
                &mut stats,
            )
            .await?;
            check_series(&data, limits)?;
            let started = Instant::now();
            let result = run.spawn(data, HashSet::new()).await?.0;
            stats.eval_seconds += started.elapsed().as_secs_f64();
            result
        }
        result => result,
    };
    let result = result.map(|(answer, mut served)| {
        served.stats = stats;
        served.pushed = pushed;
        (answer, served)
    });
    guard.1 = false;
    Ok(result?)
}

/// Everything one evaluation on a blocking thread needs.
struct Run {
    expr: Arc<Expr>,
    range: Range,
    interrupt: Interrupt,
    limits: Limits,
    sketches: Option<Arc<dyn Sketches>>,
    canceled: Counter,
    /// The answers of subtrees the endpoints computed.
    precomputed: Arc<Precomputed>,
    /// Kept (not read) until the evaluation ends, even after its caller went away.
    _held: Option<Held>,
}

/// What [`Run::spawn`] gives back: the result, the run (for another try) and its data.
type Ran = (Result<(Answer, Served), EvalError>, Run, Data);

impl Run {
    /// Evaluates on a blocking thread; `unfetched` selectors hold label sets only.
    async fn spawn(self, data: Data, unfetched: HashSet<SelectorId>) -> Result<Ran, QueryError> {
        // The blocking thread has no span of its own: the request's is carried there.
        let span = tracing::info_span!("eval");
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.entered();
            let using = self.sketches.as_deref().map(|sketches| SketchUse {
                sketches,
                min_window_ms: sketches.min_window_ms(),
                unfetched: &unfetched,
            });
            let result = eval::evaluate_pushed(
                &self.expr,
                self.range,
                &data,
                &self.limits,
                &self.interrupt,
                using,
                &self.precomputed,
            );
            if matches!(result, Err(EvalError::Canceled)) {
                self.canceled.inc();
            }
            (result, self, data)
        });
        task.await.map_err(|e| QueryError::Internal(e.to_string()))
    }
}

/// Sends the endpoints the parts of `expr` they can answer alone (`promql::pushdown`),
/// when the source reads several that allow it, and merges their answers; `described`
/// gets each part with the endpoints asked. Parts inside subqueries are left to the
/// engine (their steps are the subquery's).
async fn push_down(
    reader: Reader<'_>,
    expr: &Expr,
    range: Range,
    own_functions: &[String],
    deadline: Instant,
    described: &mut Vec<String>,
) -> Result<Precomputed, QueryError> {
    let mut precomputed = Precomputed::default();
    let Some(fanout) = reader.source.fanout() else {
        return Ok(precomputed);
    };
    let Some(topology) = fanout.push_down_topology(own_functions) else {
        return Ok(precomputed);
    };
    let steps = (range.start_ms, range.end_ms, range.step_ms);
    for part in pushdown::plan(expr, &topology)
        .into_iter()
        .filter(|p| !p.in_subquery)
    {
        let asking = fanout.evaluate_pushed(&part.queries, steps, reader.partial);
        let (answers, asked) = match tokio::time::timeout_at(deadline.into(), asking).await {
            Ok(Err(SourceError::TooMuch { what: "samples", .. })) => {
                return Err(EvalError::TooManySamples.into());
            }
            // An endpoint that cannot evaluate its part (duplicate label sets, too many
            // samples there) fails the query as Prometheus fails it.
            Ok(Err(error)) if error.refused_query().is_some() => {
                let message = error.refused_query().unwrap_or_default().to_owned();
                return Err(EvalError::Execution(message).into());
            }
            Ok(result) => result?,
            Err(_) => return Err(EvalError::Timeout.into()),
        };
        precomputed.insert(part.node, pushdown::merge(&part, &answers)?);
        described.push(format!("{} @ {}", part.subtree, asked.join(" ")));
    }
    Ok(precomputed)
}

/// Reads the raw data of the needs at `which` into `data`, within the deadline.
async fn fetch(
    reader: Reader<'_>,
    needs: &[plan::Need],
    selections: &[Selection],
    which: &[usize],
    deadline: Instant,
    data: &mut Data,
    stats: &mut Stats,
) -> Result<(), QueryError> {
    if which.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let to_fetch: Vec<Selection> = which.iter().map(|&i| selections[i].clone()).collect();
    let selecting = reader
        .source
        .select(&to_fetch, reader.partial)
        .instrument(tracing::info_span!("fetch", selectors = to_fetch.len()));
    let fetched = match tokio::time::timeout_at(deadline.into(), selecting).await {
        // Past the remote-read sample cap is past the evaluation's too: same error.
        Ok(Err(SourceError::TooMuch { what: "samples", .. })) => {
            return Err(EvalError::TooManySamples.into());
        }
        Ok(result) => result?,
        Err(_) => return Err(EvalError::Timeout.into()),
    };
    for (&i, series) in which.iter().zip(fetched) {
        let converted: Vec<Series> = series
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
        stats.samples_read += converted.iter().map(|s| s.points.len() as u64).sum::<u64>();
        data.insert(needs[i].id, converted);
    }
    stats.fetch_seconds += started.elapsed().as_secs_f64();
    Ok(())
}

/// `query.max_series` over every selector's series.
fn check_series(data: &Data, limits: &QueryLimits) -> Result<(), QueryError> {
    let total: usize = data.values().map(Vec::len).sum();
    if total > limits.max_series {
        return Err(QueryError::TooManySeries {
            limit: limits.max_series,
        });
    }
    Ok(())
}

/// Selectors whose every series the sketches answer, with those series' labels and no
/// samples: their raw data is not fetched. Only calls outside subqueries qualify (their
/// windows end at the query's steps), and a selector stays fetched when downstream's
/// series list cannot be had in time.
async fn sketch_covered(
    reader: Reader<'_>,
    expr: &Expr,
    range: Range,
    needs: &[plan::Need],
    selections: &[Selection],
    sketches: &Arc<dyn Sketches>,
    deadline: Instant,
) -> Vec<(SelectorId, Vec<Series>)> {
    let Reader { source, partial } = reader;
    let served = |f: &str| sketches.serves(f);
    let (calls, _) = sketch_plan::sketch_calls(expr, &served, sketches.min_window_ms());
    let mut covered = Vec::new();
    for call in calls.iter().filter(|c| !c.in_subquery) {
        let Some(at) = needs.iter().position(|n| n.id == call.id) else {
            continue;
        };
        let ends = match call.at {
            Some(at) => Range::instant(eval::at_ms(at, &range) - call.offset_ms),
            None => Range {
                start_ms: range.start_ms - call.offset_ms,
                end_ms: range.end_ms - call.offset_ms,
                step_ms: range.step_ms,
            },
        };
        // Which series exist: from the sketches when they know them all, else from
        // downstream.
        let selection = &selections[at];
        let listed = sketches.listed(call.function, &selection.matchers, selection.start_ms);
        let series = match listed {
            Some(listed) => listed.into_iter().map(|l| l.iter().cloned().collect()).collect(),
            None => match tokio::time::timeout_at(deadline.into(), source.series(selection, partial)).await {
                Ok(Ok(series)) => series,
                _ => continue,
            },
        };
        let (function, window, sketches) = (call.function, call.window_ms, sketches.clone());
        // Coverage asks each sketch's plugin: blocking calls.
        let check = tokio::task::spawn_blocking(move || {
            let labelled: Vec<Series> = series
                .into_iter()
                .map(|l| Series {
                    labels: Labels::from_sorted(l),
                    points: Vec::new(),
                })
                .collect();
            labelled
                .iter()
                .all(|s| sketches.covers(function, &s.labels, ends, window))
                .then_some(labelled)
        });
        if let Ok(Some(labelled)) = check.await {
            covered.push((call.id, labelled));
        }
    }
    covered
}

#[cfg(test)]
mod tests;
