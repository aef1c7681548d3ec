//! A PromQL evaluator with Prometheus 2.42's semantics (its `promql/engine.go` and
//! `functions.go` are the reference), over raw series fetched beforehand. Pure: the
//! caller fetches what [`plan::needs`] lists and hands it over; evaluation does no IO
//! and reads no clock except through [`Interrupt`].
//!
//! Like Prometheus, every expression is evaluated over all steps at once: an instant
//! vector travels as a matrix with one point per step, a scalar as one series without
//! labels. An instant query is a range evaluation of one step.

mod aggregate;
mod binary;
mod call;
mod functions;
pub mod plan;
mod quantile;
pub mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, UNIX_EPOCH};

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use self::value::{Labels, Matrix, Point, Sample, Series, Vector};

/// Prometheus' stale marker, bit for bit.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The evaluation range: `start` to `end` inclusive every `step` ms. An instant query
/// is `start == end` with step 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First step, ms.
    pub start_ms: i64,
    /// Last step, ms.
    pub end_ms: i64,
    /// Step, ms (> 0).
    pub step_ms: i64,
}

impl Range {
    /// One evaluation at `t_ms`.
    pub fn instant(t_ms: i64) -> Self {
        Self {
            start_ms: t_ms,
            end_ms: t_ms,
            step_ms: 1,
        }
    }

    fn steps(&self) -> impl Iterator<Item = i64> + use<> {
        let (start, end, step) = (self.start_ms, self.end_ms, self.step_ms.max(1));
        std::iter::successors(Some(start), move |t| t.checked_add(step)).take_while(move |t| *t <= end)
    }

    fn len(&self) -> usize {
        usize::try_from((self.end_ms - self.start_ms) / self.step_ms.max(1) + 1).unwrap_or(0)
    }
}

/// Identifies a selector node of an expression by its address. Valid while the
/// expression it came from is neither dropped nor moved (keep it in an `Arc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectorId(usize);

impl SelectorId {
    /// The id of `vs`.
    pub fn of(vs: &VectorSelector) -> Self {
        Self(std::ptr::from_ref(vs) as usize)
    }
}

/// The raw series each selector selected, sorted by labels, samples oldest first,
/// stale markers included.
pub type Data = HashMap<SelectorId, Vec<Series>>;

/// Limits on one evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most samples held at once (Prometheus' `--query.max-samples`).
    pub max_samples: usize,
    /// How far back an instant vector looks for a sample, ms.
    pub lookback_ms: i64,
}

/// Stops an evaluation: past a deadline, or when the client went away.
#[derive(Debug, Clone)]
pub struct Interrupt {
    /// When the query times out.
    pub deadline: Instant,
    /// Set when the client is gone.
    pub cancelled: Arc<AtomicBool>,
}

/// How much work (steps, samples) passes between two [`Interrupt::tick`] checks:
/// little enough that a check comes well within a millisecond, enough that reading the
/// clock costs nothing measurable.
const TICK_EVERY: usize = 4096;

impl Interrupt {
    /// [`Interrupt::check`] once [`TICK_EVERY`] units of work have been counted in
    /// `count`: for loops whose iterations are cheap but whose number is unbounded (the
    /// steps of a fine subquery).
    fn tick(&self, count: &mut usize, work: usize) -> Result<(), EvalError> {
        *count += work;
        if *count >= TICK_EVERY {
            *count = 0;
            self.check()?;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), EvalError> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(EvalError::Canceled);
        }
        if Instant::now() >= self.deadline {
            return Err(EvalError::Timeout);
        }
        Ok(())
    }
}

/// Why an evaluation failed. Messages are Prometheus'.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// Past `Limits::max_samples`.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// Past the deadline.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The client went away.
    #[error("query was canceled in expression evaluation")]
    Canceled,
    /// A selector whose raw data was not fetched, because sketches were expected to
    /// answer every series of it, has a series they did not answer (retention moved,
    /// the plugin was quarantined or failed). The caller fetches the raw data and
    /// evaluates again; an answer never silently lacks the series.
    #[error("a sketch expected to answer a series did not, and its raw data was not fetched")]
    SketchMiss,
    /// The query cannot be answered (duplicate label sets, bad arguments, …).
    #[error("{0}")]
    Execution(String),
}

fn exec(message: impl Into<String>) -> EvalError {
    EvalError::Execution(message.into())
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Series; instant vectors and scalars over the steps too.
    Matrix(Matrix),
    /// A string literal.
    String(String),
}

/// The answer to a query, shaped like Prometheus' API result.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An instant query's vector, in evaluation order.
    Vector(Vec<(Labels, f64)>),
    /// An instant query's scalar.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// A range query's result (sorted by labels) or an instant query's range vector.
    Matrix(Matrix),
}

/// One answer of a sketch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchValue {
    /// The estimate.
    pub value: f64,
    /// Its relative error bound (0 when exact).
    pub bound: f64,
}

/// Sketches the engine may answer range functions from (issue 7), behind a trait so
/// the engine stays free of plugins and IO.
pub trait Sketches: Send + Sync {
    /// Whether a loaded plugin serves `function`.
    fn serves(&self, function: &str) -> bool;

    /// The cost rule: calls with shorter windows are answered from raw data.
    fn min_window_ms(&self) -> i64 {
        crate::promql::sketch_plan::MIN_WINDOW_MS
    }

    /// Whether the sketch of `function` over the series with `labels` covers windows
    /// of `window_ms` ending at every step of `ends`.
    fn covers(&self, function: &str, labels: &Labels, ends: Range, window_ms: i64) -> bool;

    /// The series `matchers` select that have samples from `from_ms` on, when the
    /// sketches know every one of them (see `sketches.rules[].complete`); `None` when
    /// only downstream can tell.
    fn listed(
        &self,
        _function: &str,
        _matchers: &promql_parser::label::Matchers,
        _from_ms: i64,
    ) -> Option<Vec<Labels>> {
        None
    }

    /// `function(args…)` over the series with `labels`, for windows of `window_ms`
    /// ending at every step of `ends`, if its sketch covers every one of them: one
    /// answer per step, `None` where a window holds no sample. `None` when not covered.
    fn answer(
        &self,
        function: &str,
        labels: &Labels,
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Option<Vec<Option<SketchValue>>>;

    /// [`Sketches::answer`] for each of `series`, in order. Implementations may spread
    /// the calls over their own threads; the engine starts none.
    fn answer_many(
        &self,
        function: &str,
        series: &[&Labels],
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Vec<Option<Vec<Option<SketchValue>>>> {
        series
            .iter()
            .map(|labels| guarded(|| self.answer(function, labels, args, ends, window_ms)))
            .collect()
    }

    /// `function(args…)` for windows of `window_ms` ending at every step of `ends`,
    /// computed by a fresh sketch of the plugin serving it, fed `points` (the series'
    /// raw samples): how functions that only a plugin knows are answered where no sketch
    /// covers. One answer per step; an error carries the plugin's words.
    fn compute(
        &self,
        function: &str,
        args: &[f64],
        points: &[Point],
        ends: Range,
        window_ms: i64,
    ) -> Result<Vec<Option<SketchValue>>, String>;
}

/// One series' sketch answer from `ask`; `None` (not answered, so computed from raw
/// data) when it panicked: a failing sketch costs speed, never a series.
pub fn guarded(ask: impl FnOnce() -> Option<Vec<Option<SketchValue>>>) -> Option<Vec<Option<SketchValue>>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(ask)).unwrap_or(None)
}

/// Where the sketches are, and the cost rule's minimum window.
#[derive(Clone, Copy)]
pub struct SketchUse<'a> {
    /// The sketches.
    pub sketches: &'a dyn Sketches,
    /// Windows shorter than this are answered exactly (`promql::sketch_plan`).
    pub min_window_ms: i64,
    /// Selectors whose data holds label sets only: the sketches were found to cover
    /// every series, so no raw sample was fetched. A series of theirs the sketches do
    /// not answer ends the evaluation with [`EvalError::SketchMiss`].
    pub unfetched: &'a std::collections::HashSet<SelectorId>,
}

impl std::fmt::Debug for SketchUse<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SketchUse")
            .field("min_window_ms", &self.min_window_ms)
            .finish_non_exhaustive()
    }
}

/// What one evaluation read and how long its parts took, for the query log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Raw samples read from the source.
    pub samples_read: u64,
    /// Seconds spent asking the sketches which selectors they answer.
    pub sketch_seconds: f64,
    /// Seconds spent reading raw data.
    pub fetch_seconds: f64,
    /// Seconds spent evaluating (sketch queries made during it included).
    pub eval_seconds: f64,
}

/// Which paths answered a query's range functions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    /// What was read and how long each part took (set by the caller that fetched).
    pub stats: Stats,
    /// Functions answered from sketches for some series, with the largest bound seen.
    pub sketched: std::collections::BTreeMap<String, f64>,
    /// Series of sketch-served functions answered exactly instead (no covering sketch).
    pub exact_series: usize,
    /// Functions only a plugin knows, computed from raw samples by a fresh sketch
    /// (no sketch covered), with the largest bound seen.
    pub computed: std::collections::BTreeMap<String, f64>,
    /// Subtrees endpoints answered (push-down), each with the endpoints asked.
    pub pushed: Vec<String>,
}

/// Answers of subtrees computed elsewhere (pushed to endpoints), by the node they
/// answer: evaluation takes them instead of evaluating the node. They hold the
/// subtree at the query's steps, so nodes inside a subquery (other steps) are never
/// taken from here.
#[derive(Debug, Default)]
pub struct Precomputed(HashMap<usize, Matrix>);

impl Precomputed {
    /// `node`'s answer is `answer`.
    pub fn insert(&mut self, node: &Expr, answer: Matrix) {
        self.0.insert(std::ptr::from_ref(node) as usize, answer);
    }

    /// `node`'s answer, if it was computed elsewhere.
    pub fn get(&self, node: &Expr) -> Option<&Matrix> {
        self.0.get(&(std::ptr::from_ref(node) as usize))
    }

    /// Whether nothing was.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Evaluates `expr` over `range` with the fetched `data`.
pub fn evaluate(
    expr: &Expr,
    range: Range,
    data: &Data,
    limits: &Limits,
    interrupt: &Interrupt,
) -> Result<Answer, EvalError> {
    evaluate_with(expr, range, data, limits, interrupt, None).map(|(answer, _)| answer)
}

/// [`evaluate`], answering range functions from `sketches` where they cover.
pub fn evaluate_with(
    expr: &Expr,
    range: Range,
    data: &Data,
    limits: &Limits,
    interrupt: &Interrupt,
    sketches: Option<SketchUse<'_>>,
) -> Result<(Answer, Served), EvalError> {
    evaluate_pushed(
        expr,
        range,
        data,
        limits,
        interrupt,
        sketches,
        &Precomputed::default(),
    )
}

/// [`evaluate_with`], taking the answers of `precomputed` subtrees as they are.
pub fn evaluate_pushed(
    expr: &Expr,
    range: Range,
    data: &Data,
    limits: &Limits,
    interrupt: &Interrupt,
    sketches: Option<SketchUse<'_>>,
    precomputed: &Precomputed,
) -> Result<(Answer, Served), EvalError> {
    let mut ev = Evaluator {
        precomputed,
        data,
        query: range,
        range,
        limits,
        interrupt,
        samples: 0,
        sketches,
        served: Served::default(),
    };
    let value = ev.eval(expr)?;
    let served = std::mem::take(&mut ev.served);
    let instant = range.start_ms == range.end_ms;
    let answer = match value {
        Value::String(s) => Answer::String(s),
        Value::Matrix(m) if instant && expr.value_type() == ValueType::Vector => Answer::Vector(
            m.into_iter()
                .filter_map(|s| s.points.first().map(|p| (s.labels, p.v)))
                .collect(),
        ),
        Value::Matrix(m) if instant && expr.value_type() == ValueType::Scalar => {
            Answer::Scalar(m.first().and_then(|s| s.points.first()).map_or(f64::NAN, |p| p.v))
        }
        Value::Matrix(m) if instant => Answer::Matrix(m),
        Value::Matrix(mut m) => {
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            Answer::Matrix(m)
        }
    };
    Ok((answer, served))
}

/// An `@` modifier's time in ms; `start()`/`end()` are the query's.
pub fn at_ms(at: &AtModifier, query: &Range) -> i64 {
    match at {
        AtModifier::Start => query.start_ms,
        AtModifier::End => query.end_ms,
        AtModifier::At(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        },
    }
}

/// An offset in ms; negative offsets look ahead.
pub fn offset_ms(offset: Option<&Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    }
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

struct Evaluator<'a> {
    data: &'a Data,
    /// The top-level query's range (what `start()` and `end()` mean).
    query: Range,
    /// This evaluator's range (a subquery's differs).
    range: Range,
    limits: &'a Limits,
    interrupt: &'a Interrupt,
    /// Samples held now, as Prometheus counts them.
    samples: usize,
    sketches: Option<SketchUse<'a>>,
    served: Served,
    precomputed: &'a Precomputed,
}

/// What `range_eval` calls at every step: the arguments' values there, and the step.
type StepFn<'f> = dyn FnMut(&[Arg<'_>], i64) -> Result<Vector, EvalError> + 'f;

/// One argument of a step function.
#[derive(Debug, Clone, Copy)]
enum Arg<'v> {
    Vector(&'v [Sample]),
    String(&'v str),
}

impl<'v> Arg<'v> {
    fn vector(self) -> &'v [Sample] {
        match self {
            Arg::Vector(v) => v,
            Arg::String(_) => &[],
        }
    }

    fn scalar(self) -> f64 {
        self.vector().first().map_or(f64::NAN, |s| s.v)
    }
}

impl Evaluator<'_> {
    fn eval(&mut self, expr: &Expr) -> Result<Value, EvalError> {
        self.interrupt.check()?;
        if !self.precomputed.is_empty()
            && self.range == self.query
            && let Some(answer) = self.precomputed.get(expr)
        {
            self.take(answer.iter().map(|s| s.points.len()).sum())?;
            return Ok(Value::Matrix(answer.clone()));
        }
        match expr {
            Expr::NumberLiteral(n) => {
                let v = n.val;
                self.range_eval(&[], &mut |_, _| {
                    Ok(vec![Sample {
                        labels: Labels::default(),
                        t: 0,
                        v,
                    }])
                })
                .map(Value::Matrix)
            }
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => {
                let mut m = self.matrix(&u.expr)?;
                for s in &mut m {
                    s.labels = s.labels.without_name();
                    for p in &mut s.points {
                        p.v = -p.v;
                    }
                }
                check_unique(m.iter().map(|s| &s.labels))?;
                Ok(Value::Matrix(m))
            }
            Expr::VectorSelector(vs) => self.vector_selector(vs).map(Value::Matrix),
            Expr::MatrixSelector(ms) => {
                if self.range.start_ms != self.range.end_ms {
                    return Err(exec("cannot do range evaluation of matrix selector"));
                }
                let reference = self.reference(&ms.vs, self.range.start_ms);
                let window = duration_ms(ms.range);
                let mut out = Vec::new();
                for series in selected(self.data, &ms.vs) {
                    let points: Vec<Point> = series
                        .points
                        .iter()
                        .filter(|p| p.t >= reference - window && p.t <= reference && !is_stale(p.v))
                        .copied()
                        .collect();
                    if !points.is_empty() {
                        self.take(points.len())?;
                        out.push(Series {
                            labels: series.labels.clone(),
                            points,
                        });
                    }
                }
                Ok(Value::Matrix(out))
            }
            Expr::Subquery(sq) => self.subquery(sq).map(|(m, _)| Value::Matrix(m)),
            Expr::Call(call) => self.call(call).map(Value::Matrix),
            Expr::Aggregate(agg) => self.aggregate(agg).map(Value::Matrix),
            Expr::Binary(b) => self.binary(b).map(Value::Matrix),
            Expr::Extension(_) => Err(exec("extension expressions are not supported")),
        }
    }

    /// Evaluates an expression that yields series.
    fn matrix(&mut self, expr: &Expr) -> Result<Matrix, EvalError> {
        match self.eval(expr)? {
            Value::Matrix(m) => Ok(m),
            Value::String(_) => Err(exec("expected series, got a string")),
        }
    }

    /// Counts `n` more samples held, failing past the limit.
    fn take(&mut self, n: usize) -> Result<(), EvalError> {
        self.samples += n;
        if self.samples > self.limits.max_samples {
            return Err(EvalError::TooManySamples);
        }
        Ok(())
    }

    /// The time a selector reads at evaluation step `ts`: its `@` time or `ts`, less
    /// its offset.
    fn reference(&self, vs: &VectorSelector, ts: i64) -> i64 {
        let base = vs.at.as_ref().map_or(ts, |at| at_ms(at, &self.query));
        base - offset_ms(vs.offset.as_ref())
    }

    /// An instant-vector selector over all steps: at each, the newest sample no older
    /// than the lookback delta, unless it is a stale marker.
    fn vector_selector(&mut self, vs: &VectorSelector) -> Result<Matrix, EvalError> {
        let mut out = Vec::new();
        let steps = self.range;
        let lookback = self.limits.lookback_ms;
        let mut ticks = 0;
        for series in selected(self.data, vs) {
            let mut points = Vec::new();
            let mut next = 0;
            for ts in steps.steps() {
                self.interrupt.tick(&mut ticks, 1)?;
                let reference = self.reference(vs, ts);
                if let Some(p) = lookup(&series.points, &mut next, reference, lookback) {
                    // Held samples are counted as they come: a fine subquery's steps
                    // are unbounded, memory is not.
                    if self.samples + points.len() >= self.limits.max_samples {
                        return Err(EvalError::TooManySamples);
                    }
                    points.push(Point { t: ts, v: p.v });
                }
            }
            if !points.is_empty() {
                self.take(points.len())?;
                out.push(Series {
                    labels: series.labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }

    /// The instant vector of `vs` at one step, samples keeping their own timestamps
    /// (what `timestamp()` reports).
    fn vector_at(&mut self, vs: &VectorSelector, ts: i64) -> Result<Vector, EvalError> {
        let reference = self.reference(vs, ts);
        let lookback = self.limits.lookback_ms;
        let mut out = Vec::new();
        for series in selected(self.data, vs) {
            let mut next = 0;
            if let Some(p) = lookup(&series.points, &mut next, reference, lookback) {
                out.push(Sample {
                    labels: series.labels.clone(),
                    t: p.t,
                    v: p.v,
                });
            }
        }
        self.take(out.len())?;
        Ok(out)
    }

    /// A subquery: its expression over its own steps (aligned to multiples of its step),
    /// and the offset that places its windows, as Prometheus' `evalSubquery` does.
    fn subquery(&mut self, sq: &promql_parser::parser::SubqueryExpr) -> Result<(Matrix, i64), EvalError> {
        let offset = offset_ms(sq.offset.as_ref());
        let window = duration_ms(sq.range);
        let step = match sq.step {
            Some(s) if !s.is_zero() => duration_ms(s),
            // Prometheus' default: the global evaluation interval, 1m unless configured.
            _ => 60_000,
        };
        let (outer_start, outer_end) = match &sq.at {
            Some(at) => {
                let t = at_ms(at, &self.query);
                (t, t)
            }
            None => (self.range.start_ms, self.range.end_ms),
        };
        let from = outer_start - offset - window;
        let mut start = step * from.div_euclid(step);
        if start < from {
            start += step;
        }
        let inner = Range {
            start_ms: start,
            end_ms: outer_end - offset,
            step_ms: step,
        };
        let saved = self.range;
        self.range = inner;
        let result = self.matrix(&sq.expr);
        self.range = saved;
        Ok((result?, offset))
    }

    /// Prometheus' `rangeEval`: evaluates `args` (strings are passed through), then
    /// calls `f` at every step with each argument's vector at that step, and gathers
    /// the results into series.
    fn range_eval(&mut self, args: &[&Expr], f: &mut StepFn<'_>) -> Result<Matrix, EvalError> {
        let before = self.samples;
        let mut inputs: Vec<Option<Matrix>> = Vec::with_capacity(args.len());
        let mut strings: Vec<Option<String>> = Vec::with_capacity(args.len());
        for arg in args {
            match self.eval(arg)? {
                Value::Matrix(m) => {
                    inputs.push(Some(m));
                    strings.push(None);
                }
                Value::String(s) => {
                    inputs.push(None);
                    strings.push(Some(s));
                }
            }
        }
        let mut cursors: Vec<Vec<usize>> = inputs
            .iter()
            .map(|m| vec![0; m.as_ref().map_or(0, Vec::len)])
            .collect();
        let mut vectors: Vec<Vector> = vec![Vec::new(); args.len()];
        let mut out = Gather::default();
        let instant = self.range.start_ms == self.range.end_ms;
        let held = self.samples;
        let mut out_points = 0;
        for ts in self.range.steps() {
            self.interrupt.check()?;
            for (i, input) in inputs.iter().enumerate() {
                let vector = &mut vectors[i];
                vector.clear();
                let Some(matrix) = input else { continue };
                for (si, series) in matrix.iter().enumerate() {
                    let at = &mut cursors[i][si];
                    if let Some(p) = series.points.get(*at)
                        && p.t == ts
                    {
                        vector.push(Sample {
                            labels: series.labels.clone(),
                            t: ts,
                            v: p.v,
                        });
                        *at += 1;
                    }
                }
            }
            let step_args: Vec<Arg<'_>> = vectors
                .iter()
                .zip(&strings)
                .map(|(v, s)| match s {
                    Some(s) => Arg::String(s),
                    None => Arg::Vector(v),
                })
                .collect();
            let result = f(&step_args, ts)?;
            check_unique(result.iter().map(|s| &s.labels))?;
            self.samples = held;
            self.take(out_points + result.len())?;
            if instant {
                self.samples = before + result.len();
                return Ok(result
                    .into_iter()
                    .map(|s| Series {
                        labels: s.labels,
                        points: vec![Point { t: ts, v: s.v }],
                    })
                    .collect());
            }
            out_points += result.len();
            out.push(ts, result);
        }
        self.samples = before;
        self.take(out_points)?;
        Ok(out.out)
    }
}

/// The series `vs` selected.
fn selected<'d>(data: &'d Data, vs: &VectorSelector) -> &'d [Series] {
    data.get(&SelectorId::of(vs)).map_or(&[], Vec::as_slice)
}

/// The newest point at or before `reference` and no older than `lookback`, unless it is
/// a stale marker. `next` is a cursor for calls with growing `reference`.
fn lookup(points: &[Point], next: &mut usize, reference: i64, lookback: i64) -> Option<Point> {
    if *next > 0 && points.get(*next - 1).is_some_and(|p| p.t > reference) {
        *next = 0;
    }
    while points.get(*next).is_some_and(|p| p.t <= reference) {
        *next += 1;
    }
    let p = *points.get(next.checked_sub(1)?)?;
    (p.t >= reference - lookback && !is_stale(p.v)).then_some(p)
}

/// Prometheus' "vector cannot contain metrics with the same labelset" check.
fn check_unique<'l>(labels: impl ExactSizeIterator<Item = &'l Labels>) -> Result<(), EvalError> {
    if labels.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(labels.len());
    let mut labels = labels;
    if labels.all(|l| seen.insert(l)) {
        Ok(())
    } else {
        Err(exec("vector cannot contain metrics with the same labelset"))
    }
}

/// Per-step results gathered into series, in order of first appearance.
#[derive(Default)]
struct Gather {
    out: Vec<Series>,
    index: HashMap<Labels, usize>,
}

impl Gather {
    fn push(&mut self, ts: i64, vector: Vector) {
        for sample in vector {
            let at = *self.index.entry(sample.labels.clone()).or_insert_with(|| {
                self.out.push(Series {
                    labels: sample.labels,
                    points: Vec::new(),
                });
                self.out.len() - 1
            });
            self.out[at].points.push(Point { t: ts, v: sample.v });
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
