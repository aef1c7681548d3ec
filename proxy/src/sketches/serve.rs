//! The sketch store as the engine's [`Sketches`]: a series' sketch answers a range
//! function when it covers every window the evaluation needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::{Busy, SketchStore};
use crate::plugin_host::{PluginSet, RangeRequest, Sketch, SketchConfig};
use crate::prompb::series_hash;
use crate::promql::eval::value::{Labels, Point};
use crate::promql::eval::{Range, SketchValue, Sketches};

/// Windows may end this long after a sketch's newest sample and still be served:
/// remote write delivers in batches (every few seconds by default), so a sketch trails
/// its series by up to one batch, and a panel ending "now" would otherwise never be
/// served. The samples of that gap are the only ones an answer may miss.
pub const INGEST_LAG_MS: i64 = 30_000;

/// The store with the plugins that serve it.
#[derive(Debug, Clone)]
pub struct StoreSketches {
    /// The sketches.
    pub store: Arc<SketchStore>,
    /// The loaded plugins.
    pub plugins: Arc<PluginSet>,
    /// Whether the store's sketches may answer (not with `sketch=off`); plugins still
    /// compute the functions only they know.
    pub use_store: bool,
    /// The rules, for which selectors the store knows every series of.
    pub rules: Arc<super::Rules>,
    /// `sketches.min_window`, ms.
    pub min_window_ms: i64,
}

/// Samples per `insert` call when a plugin computes from raw samples: one call's
/// argument stays well within a plugin's memory cap.
const COMPUTE_BATCH: usize = 4096;

impl Sketches for StoreSketches {
    fn min_window_ms(&self) -> i64 {
        self.min_window_ms
    }

    fn serves(&self, function: &str) -> bool {
        self.plugins.for_function(function).is_some()
    }

    fn covers(&self, function: &str, labels: &Labels, ends: Range, window_ms: i64) -> bool {
        self.sketch(function, labels)
            .and_then(|sketch| sketch.serving_coverage())
            .is_some_and(|span| covered(span, ends, window_ms))
    }

    fn listed(
        &self,
        function: &str,
        matchers: &promql_parser::label::Matchers,
        from_ms: i64,
    ) -> Option<Vec<Labels>> {
        if !self.use_store {
            return None;
        }
        let listed = self.store.listing(&self.rules, function, matchers, from_ms)?;
        Some(listed.into_iter().map(Labels::from_sorted).collect())
    }

    fn answer(
        &self,
        function: &str,
        labels: &Labels,
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Option<Vec<Option<SketchValue>>> {
        let sketch = self.sketch(function, labels)?;
        let span = sketch.serving_coverage()?;
        sketch
            .serving(|s| answer_from(s, span, function, args, ends, window_ms))
            .flatten()
    }

    fn answer_many(
        &self,
        function: &str,
        series: &[&Labels],
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Vec<Option<Vec<Option<SketchValue>>>> {
        // On the plugin call threads, whose plugin calls then run in place instead of
        // each switching threads (a day window costs tens of microseconds, a switch
        // about as much), one task per plugin instance so that no two wait for the same
        // instance. They never wait for a sketch's lock: a series whose sketch is busy
        // (an insert, a snapshot) is asked again on the ask threads, which may wait. A
        // series whose ask panicked is one the sketches did not answer: the engine
        // reads its raw data.
        let mut by_instance: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let plugin = self.plugins.for_function(function);
        for (i, labels) in series.iter().enumerate() {
            let instance = plugin.map_or(0, |p| p.instance_for(series_hash(labels.as_slice())));
            by_instance.entry(instance).or_default().push(i);
        }
        let groups: Vec<Vec<usize>> = by_instance.into_values().collect();
        let mut first: Vec<FirstAsk> = vec![None; series.len()];
        // Each task runs in the caller's span, so its plugin calls join the query's trace.
        let span = tracing::Span::current();
        let asked: Vec<(usize, FirstAsk)> = crate::plugin_host::on_call_pool(|| {
            groups
                .par_iter()
                .flat_map_iter(|group| {
                    group.iter().map(|&i| {
                        let answer = span.in_scope(|| {
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                self.try_answer(function, series[i], args, ends, window_ms)
                            }))
                        });
                        (i, answer.ok())
                    })
                })
                .collect()
        });
        for (i, answer) in asked {
            first[i] = answer;
        }
        let busy: Vec<(usize, Labels)> = first
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Some(Err(Busy))))
            .map(|(i, _)| (i, series[i].clone()))
            .collect();
        let mut answers: Vec<Option<Answers>> = first
            .into_iter()
            .map(|r| r.and_then(Result::ok).flatten())
            .collect();
        if !busy.is_empty() {
            let me = self.clone();
            let (function, args) = (function.to_owned(), args.to_vec());
            let retried = super::ask::map(busy, move |(i, labels)| {
                (
                    i,
                    crate::promql::eval::guarded(|| me.answer(&function, &labels, &args, ends, window_ms)),
                )
            });
            for (i, answer) in retried.into_iter().flatten() {
                answers[i] = answer;
            }
        }
        answers
    }

    fn compute(
        &self,
        function: &str,
        args: &[f64],
        points: &[Point],
        ends: Range,
        window_ms: i64,
    ) -> Result<Vec<Option<SketchValue>>, String> {
        let plugin = self
            .plugins
            .for_function(function)
            .ok_or_else(|| format!("no loaded plugin serves {function}"))?;
        let config = SketchConfig {
            // Everything from the first window's start to the last window's end.
            retention_ms: ends.end_ms - ends.start_ms + window_ms + 1,
            options: Vec::new(),
        };
        let sketch = plugin.create(0, &config).map_err(|e| e.to_string())?;
        for batch in points.chunks(COMPUTE_BATCH) {
            let timestamps: Vec<i64> = batch.iter().map(|p| p.t).collect();
            let values: Vec<f64> = batch.iter().map(|p| p.v).collect();
            sketch.insert(&timestamps, &values).map_err(|e| e.to_string())?;
        }
        let request = RangeRequest {
            start_ms: ends.start_ms,
            end_ms: ends.end_ms,
            step_ms: ends.step_ms,
            window_ms,
        };
        let answers = sketch
            .query_range(function, args, request)
            .map_err(|e| e.to_string())?;
        Ok(answers
            .into_iter()
            .map(|a| {
                a.map(|e| SketchValue {
                    value: e.value,
                    bound: e.bound,
                })
            })
            .collect())
    }
}

/// One series' answers, one per evaluation time.
type Answers = Vec<Option<SketchValue>>;

/// A series asked on the plugin call threads: `None` when the ask panicked, [`Busy`]
/// when its sketch was locked elsewhere.
type FirstAsk = Option<Result<Option<Answers>, Busy>>;

impl StoreSketches {
    fn sketch(&self, function: &str, labels: &Labels) -> Option<Arc<super::FunctionSketch>> {
        if !self.use_store {
            return None;
        }
        self.store.get(labels.as_slice(), function)
    }

    /// [`Sketches::answer`] without waiting for the sketch's lock.
    fn try_answer(
        &self,
        function: &str,
        labels: &Labels,
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Result<Option<Answers>, Busy> {
        let Some(sketch) = self.sketch(function, labels) else {
            return Ok(None);
        };
        Ok(sketch
            .try_serving(|s, span| answer_from(s, span, function, args, ends, window_ms))?
            .flatten())
    }
}

/// The sketch's answers when `span` covers every window.
fn answer_from(
    sketch: &Sketch,
    span: Option<(i64, i64)>,
    function: &str,
    args: &[f64],
    ends: Range,
    window_ms: i64,
) -> Option<Answers> {
    if !covered(span, ends, window_ms) {
        return None;
    }
    let request = RangeRequest {
        start_ms: ends.start_ms,
        end_ms: ends.end_ms,
        step_ms: ends.step_ms,
        window_ms,
    };
    let answers = sketch.query_range(function, args, request).ok()?;
    Some(
        answers
            .into_iter()
            .map(|a| {
                a.map(|e| SketchValue {
                    value: e.value,
                    bound: e.bound,
                })
            })
            .collect(),
    )
}

/// Every window lies within `span`, what the sketch has seen.
fn covered(span: Option<(i64, i64)>, ends: Range, window_ms: i64) -> bool {
    span.is_some_and(|(oldest, newest)| {
        ends.start_ms - window_ms >= oldest && ends.end_ms <= newest + INGEST_LAG_MS
    })
}
