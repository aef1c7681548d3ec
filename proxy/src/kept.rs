//! Kept results of rule queries. A range query whose text is a registered rule query
//! (`sketches.queries`, `--sketch.rule`) and that sketches answered keeps the answer of
//! each of its steps in a moka cache keyed by (query, step time), once the step is
//! final: no sample can still arrive at or before it (it lies more than
//! [`INGEST_LAG_MS`] in the past). A range step's value is the instant query's value at
//! that time, whatever the range's start or step, so a Grafana panel refreshed a step
//! later finds every step but the newest and computes only that one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::Expr;

use crate::promql::eval::value::{Labels, Matrix, Point, Series};
use crate::promql::eval::{Answer, Range, Served};
use crate::sketches::INGEST_LAG_MS;

/// One step's kept answer.
#[derive(Debug)]
pub struct Step {
    samples: Vec<(Labels, f64)>,
    /// Functions answered from sketches, with their largest bound.
    sketched: BTreeMap<String, f64>,
}

/// The cache of one configuration (a reload starts empty: plugins may change).
#[derive(Debug)]
pub struct KeptResults {
    queries: HashSet<String>,
    cache: moka::sync::Cache<(Arc<str>, i64), Arc<Step>>,
}

/// The steps of a range found kept, by index; `None` where missing.
pub type Lookup = Vec<Option<Arc<Step>>>;

impl KeptResults {
    /// Keeps steps of `queries` (rule query texts), at most `max_points` values.
    pub fn new(queries: &[String], max_points: u64) -> Self {
        let queries = queries
            .iter()
            .filter_map(|q| crate::promql::parse(q).ok())
            .map(|e| e.to_string())
            .collect();
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_points)
            .weigher(|_, step: &Arc<Step>| u32::try_from(step.samples.len() + 1).unwrap_or(u32::MAX))
            .build();
        Self { queries, cache }
    }

    /// The key of `expr` when it is a rule query whose steps can be kept: `@` ties a
    /// step's value to the range, so such queries are not.
    pub fn key(&self, expr: &Expr) -> Option<Arc<str>> {
        // Printing the query costs; most configurations register none.
        if self.queries.is_empty() {
            return None;
        }
        let text = expr.to_string();
        (self.queries.contains(&text) && !text.contains('@')).then(|| text.into())
    }

    /// The kept steps of `range`.
    pub fn lookup(&self, key: &Arc<str>, range: Range) -> Lookup {
        steps(range).map(|t| self.cache.get(&(key.clone(), t))).collect()
    }

    /// Keeps the final steps (before `now_ms - INGEST_LAG_MS`) of `answer`, the range
    /// query `key` over `range`, when sketches answered all of it.
    pub fn keep(&self, key: &Arc<str>, range: Range, answer: &Answer, served: &Served, now_ms: i64) {
        let matrix = as_matrix(range, answer.clone());
        if served.exact_series > 0 || served.sketched.is_empty() {
            return;
        }
        let final_before = now_ms - INGEST_LAG_MS;
        let mut by_step: Vec<Vec<(Labels, f64)>> = steps(range).map(|_| Vec::new()).collect();
        for series in &matrix {
            for p in &series.points {
                if let Some(slot) = index(range, p.t).and_then(|i| by_step.get_mut(i)) {
                    slot.push((series.labels.clone(), p.v));
                }
            }
        }
        for (t, samples) in steps(range).zip(by_step) {
            if t >= final_before {
                break;
            }
            let step = Step {
                samples,
                sketched: served.sketched.clone(),
            };
            self.cache.insert((key.clone(), t), Arc::new(step));
        }
    }
}

/// The contiguous run of missing steps, as a range (first to last missing: kept steps
/// between them are computed again, which a panel moving forward never has).
pub fn missing(range: Range, found: &Lookup) -> Option<Range> {
    let first = found.iter().position(Option::is_none)?;
    let last = found.iter().rposition(Option::is_none)?;
    Some(Range {
        start_ms: range.start_ms + first as i64 * range.step_ms,
        end_ms: range.start_ms + last as i64 * range.step_ms,
        step_ms: range.step_ms,
    })
}

/// The answer over `range`: kept steps from `found`, the others from `computed` (the
/// answer over `missing`, with its `served`). Series sorted by labels, as Prometheus
/// sorts a range result.
pub fn assemble(range: Range, found: Lookup, computed: Option<(Range, Answer, Served)>) -> (Answer, Served) {
    let mut served = Served::default();
    let mut series: Vec<Series> = Vec::new();
    // By label-set address first (a computed answer shares one per series), then by
    // value: most lookups never hash the labels.
    let mut by_addr: HashMap<usize, usize> = HashMap::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut push = |labels: &Labels, point: Point| {
        let i = match by_addr.get(&labels.addr()) {
            Some(&i) => i,
            None => {
                let i = *by_labels.entry(labels.clone()).or_insert_with(|| {
                    series.push(Series {
                        labels: labels.clone(),
                        points: Vec::new(),
                    });
                    series.len() - 1
                });
                by_addr.insert(labels.addr(), i);
                i
            }
        };
        series[i].points.push(point);
    };
    let (computed_range, computed_matrix) = match computed {
        Some((r, answer, s)) => {
            served = s;
            (Some(r), as_matrix(r, answer))
        }
        None => (None, Matrix::new()),
    };
    let inside = |t: i64| computed_range.is_some_and(|r| t >= r.start_ms && t <= r.end_ms);
    // Computed points go in first; series points are put in time order below.
    for s in &computed_matrix {
        for p in &s.points {
            push(&s.labels, *p);
        }
    }
    for (t, step) in steps(range).zip(found) {
        let Some(step) = step.filter(|_| !inside(t)) else {
            continue;
        };
        for (function, bound) in &step.sketched {
            let b = served.sketched.entry(function.clone()).or_insert(0.0);
            *b = b.max(*bound);
        }
        for (labels, v) in &step.samples {
            push(labels, Point { t, v: *v });
        }
    }
    for s in &mut series {
        s.points.sort_by_key(|p| p.t);
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    (Answer::Matrix(series), served)
}

/// A range answer as series, sorted by labels: the engine answers a one-step range
/// (`start == end`) in an instant query's shape.
pub fn as_matrix(range: Range, answer: Answer) -> Matrix {
    match answer {
        Answer::Matrix(m) => m,
        Answer::Vector(v) => {
            let mut m: Matrix = v
                .into_iter()
                .map(|(labels, v)| Series {
                    labels,
                    points: vec![Point { t: range.start_ms, v }],
                })
                .collect();
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            m
        }
        Answer::Scalar(v) => vec![Series {
            labels: Labels::default(),
            points: vec![Point { t: range.start_ms, v }],
        }],
        Answer::String(_) => Matrix::new(),
    }
}

/// Steps in `range`.
pub fn step_count(range: Range) -> usize {
    steps(range).count()
}

fn steps(range: Range) -> impl Iterator<Item = i64> {
    let step = usize::try_from(range.step_ms.max(1)).unwrap_or(usize::MAX);
    (range.start_ms..=range.end_ms).step_by(step)
}

fn index(range: Range, t: i64) -> Option<usize> {
    let offset = t - range.start_ms;
    (offset >= 0 && offset % range.step_ms == 0)
        .then(|| usize::try_from(offset / range.step_ms).ok())
        .flatten()
}

#[cfg(test)]
mod tests;
