//! Function calls: range functions run per series over sliding windows (Prometheus'
//! matrix-argument path), the rest per step through `range_eval`.

use std::collections::HashSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::functions::{RangeFn, Window, instant_function, range_function};
use super::plan::selector_matchers;
use super::value::{Labels, Matrix, Point, Sample, Series, Vector};
use super::{
    EvalError, Evaluator, Gather, Range, SketchValue, at_ms, check_unique, duration_ms, exec, is_stale,
    offset_ms,
};

/// Drops `( )` around an expression.
pub(super) fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// Where a range function's windows come from.
struct Windows {
    series: Matrix,
    /// The window's end at step `ts` is `at.unwrap_or(ts) - offset`.
    at: Option<i64>,
    offset: i64,
    range: i64,
}

impl Evaluator<'_> {
    pub(super) fn call(&mut self, call: &Call) -> Result<Matrix, EvalError> {
        let name = call.func.name;
        let args: Vec<&Expr> = call.args.args.iter().map(|a| unparen(a)).collect();
        if name == "timestamp"
            && let Some(Expr::VectorSelector(vs)) = args.first()
        {
            // Samples keep their own timestamps here, not the step's.
            let mut steps = Vec::new();
            for ts in self.range.steps() {
                self.interrupt.check()?;
                let vector = self.vector_at(vs, ts)?;
                let out: Vector = vector
                    .into_iter()
                    .map(|s| Sample {
                        labels: s.labels.without_name(),
                        t: s.t,
                        v: s.t as f64 / 1000.0,
                    })
                    .collect();
                steps.push((ts, out));
            }
            return self.gather(steps);
        }
        if let Some(i) = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        {
            let f = range_function(name);
            let plugin_only = f.is_none() && self.sketches.is_some_and(|s| s.sketches.serves(name));
            if f.is_none() && !plugin_only {
                return Err(exec(format!("function {name:?} is not supported")));
            }
            return self.range_call(name, f, &args, i);
        }
        if name == "absent" {
            let labels = absent_labels(args.first().copied());
            return self.range_eval(&args, &mut |v, _| {
                Ok(if v.first().is_some_and(|a| !a.vector().is_empty()) {
                    Vec::new()
                } else {
                    vec![Sample {
                        labels: labels.clone(),
                        t: 0,
                        v: 1.0,
                    }]
                })
            });
        }
        self.range_eval(&args, &mut |v, ts| instant_function(name, v, ts))
    }

    /// Per-step results gathered into series.
    fn gather(&mut self, steps: Vec<(i64, Vector)>) -> Result<Matrix, EvalError> {
        let mut out = Gather::default();
        for (ts, vector) in steps {
            check_unique(vector.iter().map(|s| &s.labels))?;
            self.take(vector.len())?;
            out.push(ts, vector);
        }
        Ok(out.out)
    }

    fn windows(&mut self, arg: &Expr) -> Result<Windows, EvalError> {
        match arg {
            Expr::MatrixSelector(ms) => {
                let series = super::selected(self.data, &ms.vs)
                    .iter()
                    .map(|s| Series {
                        labels: s.labels.clone(),
                        points: s.points.iter().filter(|p| !is_stale(p.v)).copied().collect(),
                    })
                    .collect();
                Ok(Windows {
                    series,
                    at: ms.vs.at.as_ref().map(|at| at_ms(at, &self.query)),
                    offset: offset_ms(ms.vs.offset.as_ref()),
                    range: duration_ms(ms.range),
                })
            }
            Expr::Subquery(sq) => {
                let (series, offset) = self.subquery(sq)?;
                Ok(Windows {
                    series,
                    at: sq.at.as_ref().map(|at| at_ms(at, &self.query)),
                    offset,
                    range: duration_ms(sq.range),
                })
            }
            _ => Err(exec("expected a range vector")),
        }
    }

    /// A function of a range vector: per series, per step, over the window's points.
    fn range_call(
        &mut self,
        name: &str,
        f: Option<RangeFn>,
        args: &[&Expr],
        matrix_at: usize,
    ) -> Result<Matrix, EvalError> {
        let steps = self.range.len();
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            if i == matrix_at {
                continue;
            }
            let m = self.matrix(arg)?;
            let mut values = vec![f64::NAN; steps];
            if let Some(series) = m.first() {
                for p in &series.points {
                    let k = usize::try_from((p.t - self.range.start_ms) / self.range.step_ms).unwrap_or(0);
                    if let Some(slot) = values.get_mut(k) {
                        *slot = p.v;
                    }
                }
            }
            scalars.push(values);
        }
        let before = self.samples;
        let windows = self.windows(args[matrix_at])?;
        let mut out = Vec::new();
        let mut step_scalars = vec![0.0; scalars.len()];
        let sketchable = matches!(args[matrix_at], Expr::MatrixSelector(_))
            && self
                .sketches
                .is_some_and(|s| windows.range >= s.min_window_ms && s.sketches.serves(name))
            && constant(&scalars).is_some();
        let mut answered = if sketchable {
            self.sketch_answers(name, &scalars, &windows)
        } else {
            Vec::new()
        };
        answered.resize_with(windows.series.len(), || None);
        let unfetched = match args[matrix_at] {
            Expr::MatrixSelector(ms) => self
                .sketches
                .is_some_and(|s| s.unfetched.contains(&super::SelectorId::of(&ms.vs))),
            _ => false,
        };
        if unfetched && answered.iter().any(Option::is_none) {
            return Err(EvalError::SketchMiss);
        }
        for (series, answers) in windows.series.iter().zip(answered) {
            self.interrupt.check()?;
            let mut points = Vec::new();
            if let Some(answers) = answers {
                points = self.sketch_points(name, &answers, &windows);
            } else if f.is_none() {
                points = self.computed_points(name, series, &windows, &scalars)?;
            } else if let Some(f) = f {
                if sketchable {
                    self.served.exact_series += 1;
                }
                self.exact_points(f, series, &windows, &scalars, &mut step_scalars, &mut points)?;
            }
            if !points.is_empty() {
                self.take(points.len())?;
                let labels = if name == "last_over_time" {
                    series.labels.clone()
                } else {
                    series.labels.without_name()
                };
                out.push(Series { labels, points });
            }
        }
        self.finish_range_call(name, args, matrix_at, before, out)
    }

    /// The sketches' answers for every series of `windows`, where they cover (one
    /// plugin call per series; the sketches spread them over their threads).
    fn sketch_answers(
        &self,
        name: &str,
        scalars: &[Vec<f64>],
        windows: &Windows,
    ) -> Vec<Option<Vec<Option<SketchValue>>>> {
        let (Some(using), Some(args)) = (self.sketches, constant(scalars)) else {
            return Vec::new();
        };
        let ends = self.window_ends(windows);
        let labels: Vec<&Labels> = windows.series.iter().map(|s| &s.labels).collect();
        using
            .sketches
            .answer_many(name, &labels, &args, ends, windows.range)
    }

    /// One series' points of a function only a plugin knows, computed by a fresh
    /// sketch from the raw samples (one plugin call for all steps).
    fn computed_points(
        &mut self,
        name: &str,
        series: &Series,
        windows: &Windows,
        scalars: &[Vec<f64>],
    ) -> Result<Vec<Point>, EvalError> {
        let (Some(using), Some(args)) = (self.sketches, constant(scalars)) else {
            return Err(exec(format!(
                "the scalar arguments of {name} must be the same at every step"
            )));
        };
        let ends = self.window_ends(windows);
        let first = ends.start_ms - windows.range;
        let inside: Vec<Point> = series
            .points
            .iter()
            .filter(|p| p.t >= first && p.t <= ends.end_ms)
            .copied()
            .collect();
        self.interrupt.check()?;
        let answers = using
            .sketches
            .compute(name, &args, &inside, ends, windows.range)
            .map_err(|e| exec(format!("{name}: {e}")))?;
        let (points, bound) = self.step_points(&answers, windows);
        let seen = self.served.computed.entry(name.to_owned()).or_insert(0.0);
        *seen = seen.max(bound);
        Ok(points)
    }

    /// The window ends of `windows` at the evaluation's steps (one for `@`).
    fn window_ends(&self, windows: &Windows) -> Range {
        match windows.at {
            Some(at) => Range::instant(at - windows.offset),
            None => Range {
                start_ms: self.range.start_ms - windows.offset,
                end_ms: self.range.end_ms - windows.offset,
                step_ms: self.range.step_ms,
            },
        }
    }

    /// One series' points from its sketch's answers (one per step, or one for `@`).
    fn sketch_points(
        &mut self,
        name: &str,
        answers: &[Option<SketchValue>],
        windows: &Windows,
    ) -> Vec<Point> {
        let (points, bound) = self.step_points(answers, windows);
        let seen = self.served.sketched.entry(name.to_owned()).or_insert(0.0);
        *seen = seen.max(bound);
        points
    }

    /// A plugin's answers (one per step, or one for `@`) as points at the steps, and
    /// the largest bound among them.
    fn step_points(&self, answers: &[Option<SketchValue>], windows: &Windows) -> (Vec<Point>, f64) {
        let mut points = Vec::new();
        let mut bound: f64 = 0.0;
        for (k, ts) in self.range.steps().enumerate() {
            let answer = if windows.at.is_some() {
                answers.first()
            } else {
                answers.get(k)
            };
            if let Some(Some(a)) = answer {
                bound = bound.max(a.bound);
                points.push(Point { t: ts, v: a.value });
            }
        }
        (points, bound)
    }

    /// One series' points computed from its raw samples, window by window.
    fn exact_points(
        &mut self,
        f: RangeFn,
        series: &Series,
        windows: &Windows,
        scalars: &[Vec<f64>],
        step_scalars: &mut [f64],
        points: &mut Vec<Point>,
    ) -> Result<(), EvalError> {
        {
            let (mut lo, mut hi) = (0, 0);
            let mut ticks = 0;
            for (k, ts) in self.range.steps().enumerate() {
                self.interrupt.tick(&mut ticks, 1)?;
                let end = windows.at.unwrap_or(ts) - windows.offset;
                let start = end - windows.range;
                if hi > 0 && series.points[hi - 1].t > end {
                    (lo, hi) = (0, 0);
                }
                while series.points.get(hi).is_some_and(|p| p.t <= end) {
                    hi += 1;
                }
                while lo < hi && series.points[lo].t < start {
                    lo += 1;
                }
                if lo == hi {
                    continue;
                }
                let window = &series.points[lo..hi];
                self.interrupt.tick(&mut ticks, window.len())?;
                if self.samples + window.len() > self.limits.max_samples {
                    return Err(EvalError::TooManySamples);
                }
                for (slot, values) in step_scalars.iter_mut().zip(scalars) {
                    *slot = values[k];
                }
                let context = Window {
                    ts,
                    start,
                    end,
                    scalars: step_scalars,
                };
                if let Some(v) = f(window, &context)? {
                    points.push(Point { t: ts, v });
                }
            }
        }
        Ok(())
    }

    /// `absent_over_time`'s post-processing and the duplicate check.
    fn finish_range_call(
        &mut self,
        name: &str,
        args: &[&Expr],
        matrix_at: usize,
        before: usize,
        out: Matrix,
    ) -> Result<Matrix, EvalError> {
        if name == "absent_over_time" {
            let held: HashSet<i64> = out.iter().flat_map(|s| s.points.iter().map(|p| p.t)).collect();
            let points: Vec<Point> = self
                .range
                .steps()
                .filter(|ts| !held.contains(ts))
                .map(|t| Point { t, v: 1.0 })
                .collect();
            self.samples = before;
            if points.is_empty() {
                return Ok(Vec::new());
            }
            self.take(points.len())?;
            return Ok(vec![Series {
                labels: absent_labels(Some(args[matrix_at])),
                points,
            }]);
        }
        check_unique(out.iter().map(|s| &s.labels))?;
        Ok(out)
    }
}

/// The values of scalar arguments when each is the same at every step (sketches take
/// constant arguments).
fn constant(scalars: &[Vec<f64>]) -> Option<Vec<f64>> {
    scalars
        .iter()
        .map(|values| {
            let first = *values.first()?;
            values
                .iter()
                .all(|v| v.to_bits() == first.to_bits())
                .then_some(first)
        })
        .collect()
}

/// The labels `absent` reports: the selector's equality matchers, except the metric
/// name and labels matched more than once.
fn absent_labels(arg: Option<&Expr>) -> Labels {
    let vs = match arg {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::default(),
    };
    let matchers = selector_matchers(vs);
    let mut kept: Vec<(&str, &str)> = Vec::new();
    let mut set: HashSet<&str> = HashSet::new();
    for m in &matchers.matchers {
        if m.name == "__name__" {
            continue;
        }
        kept.retain(|(n, _)| *n != m.name);
        if matches!(m.op, MatchOp::Equal) && set.insert(m.name.as_str()) {
            kept.push((&m.name, &m.value));
        }
    }
    Labels::from_pairs(kept)
}
