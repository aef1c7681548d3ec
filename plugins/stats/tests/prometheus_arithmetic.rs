//! The stats plugin natively, against Prometheus 2.42's own sequential arithmetic over
//! the same window (`OrderedWindow`, the functions of `promql/functions.go`): on several
//! distributions, with NaN and infinities mixed in, and windows of every size from a
//! few samples to many blocks, placed across block edges. Count, min, max and present
//! must be equal to the bit; sums, means and variances within 1e-12 relative (the bound
//! claimed is 1e-9), and equal to the bit below the exact threshold.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal, Zipf};
use sketch_plugin_sdk::{Call, Plugin, Series, Span, Summary, Window};
use sketch_plugin_stats::counter::LISTED_RESETS;
use sketch_plugin_stats::{EXACT_BELOW, FUNCTIONS, OrderedWindow, SLIDE_BELOW, Stats, StatsPlugin};

const SCRAPE_MS: i64 = 10_000;

fn values(kind: &str, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<f64> = match kind {
        "lognormal" => LogNormal::new(3.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "normal around 1e6" => Normal::new(1e6, 3.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "zipf integers" => Zipf::new(1000.0, 1.2)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "constant" => vec![42.5; n],
        "counter with a few resets" => counter(&mut rng, n, 9_000),
        "counter resetting often" => counter(&mut rng, n, 300),
        "with NaN" | "with +Inf" | "with both infinities" => LogNormal::new(0.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        other => panic!("{other}"),
    };
    let mut put = |at: usize, v: f64| {
        if at < out.len() {
            out[at] = v;
        }
    };
    match kind {
        "with NaN" => put(n / 3, f64::NAN),
        "with +Inf" => put(n / 2, f64::INFINITY),
        "with both infinities" => {
            put(n / 4, f64::INFINITY);
            put(n / 2, f64::NEG_INFINITY);
        }
        _ => {}
    }
    out
}

/// A counter of lognormal increments that restarts from a small value about every
/// `reset_every` samples.
fn counter(rng: &mut StdRng, n: usize, reset_every: u64) -> Vec<f64> {
    let increments = LogNormal::new(1.0, 1.5).unwrap();
    let mut value = 0.0_f64;
    (0..n)
        .map(|_| {
            if rng.random_range(0..reset_every) == 0 {
                value = f64::from(rng.random_range(0..5_u8));
            } else {
                value += f64::round(increments.sample(rng));
            }
            value
        })
        .collect()
}

/// Prometheus' answer over `window`, whose samples span `span`: for the functions over
/// the run, `promql/functions.go`'s loops written out again here (the plugin keeps its
/// counts as the window slides); for the others the plugin's sequential arithmetic.
fn prometheus(function: usize, window: &[f64], span: Span) -> Option<f64> {
    let pairs = || window.windows(2);
    match FUNCTIONS[function] {
        "last_over_time" => window.last().copied(),
        "changes" => Some(
            pairs()
                .filter(|p| p[1] != p[0] && !(p[1].is_nan() && p[0].is_nan()))
                .count() as f64,
        ),
        "resets" => Some(pairs().filter(|p| p[1] < p[0]).count() as f64),
        name @ ("delta" | "increase" | "rate") => {
            extrapolated_rate(window, span, name != "delta", name == "rate")
        }
        _ => {
            let mut ordered = OrderedWindow::default();
            ordered.fill(window);
            ordered.answer(function, span)
        }
    }
}

/// Prometheus 2.42's `extrapolatedRate`: its loop over the window here, then the
/// extrapolation the engine uses too (`promql-math`, checked against Prometheus' own
/// test scripts by the conformance tests).
fn extrapolated_rate(window: &[f64], span: Span, counter: bool, rate: bool) -> Option<f64> {
    let first = *window.first()?;
    let mut result = window[window.len() - 1] - first;
    let mut previous = first;
    for &value in &window[1..] {
        if counter && value < previous {
            result += previous;
        }
        previous = value;
    }
    let at = promql_math::Sampled {
        start_ms: span.start_ms,
        end_ms: span.end_ms,
        first_ms: span.first_ms,
        last_ms: span.last_ms,
    };
    promql_math::extrapolate(result, first, window.len() as u64, at, counter, rate)
}

/// Whether `function` reads the run in time order (last, changes, resets, delta,
/// increase, rate).
fn ordered(function: usize) -> bool {
    function >= FUNCTIONS.iter().position(|&f| f == "last_over_time").unwrap()
}

fn resets(window: &[f64]) -> usize {
    window.windows(2).filter(|w| w[1] < w[0]).count()
}

fn same(got: f64, want: f64, tolerance: f64) -> bool {
    if got.is_nan() || want.is_nan() {
        return got.is_nan() && want.is_nan();
    }
    got == want || (got - want).abs() <= tolerance * want.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn answers_equal_prometheus_arithmetic_on_every_window() {
    let n = 40_000;
    let kinds = [
        "lognormal",
        "normal around 1e6",
        "zipf integers",
        "constant",
        "with NaN",
        "with +Inf",
        "with both infinities",
        "counter with a few resets",
        "counter resetting often",
    ];
    let bound_of = |function: usize| StatsPlugin::info().functions[function].bound;
    for (seed, kind) in kinds.iter().enumerate() {
        let vs = values(kind, n, seed as u64);
        let ts: Vec<i64> = (0..n as i64).map(|i| i * SCRAPE_MS).collect();
        let mut series = Series::new(StatsPlugin, n as i64 * SCRAPE_MS).unwrap();
        for (t, v) in ts.chunks(500).zip(vs.chunks(500)) {
            series.insert(t, v).unwrap();
        }
        // (first sample, samples): small, at the threshold, and many blocks, at
        // positions that start and end mid-block.
        let windows = [
            (0, 1),
            (77, 40),
            (1000, EXACT_BELOW as usize - 1),
            (3333, EXACT_BELOW as usize),
            (5000, 1001),
            (13_000, 8_640),
            (n / 3 - 100, 300),
            (0, n),
        ];
        for (first, len) in windows
            .into_iter()
            .chain([(2000, SLIDE_BELOW as usize - 1), (7000, SLIDE_BELOW as usize)])
        {
            let window = &vs[first..first + len];
            // The range reaches past both edge samples, as a query's usually does;
            // rate extrapolates to its ends.
            let (t0, t1) = (ts[first] - 3_000, ts[first + len - 1] + 4_000);
            let span = Span {
                start_ms: t0,
                end_ms: t1,
                first_ms: ts[first],
                last_ms: ts[first + len - 1],
            };
            for (function, name) in FUNCTIONS.iter().enumerate() {
                let call = Call::new(function, &[]);
                let got = series.query(call, bound_of(function), t0, t1);
                let want = prometheus(function, window, span);
                let (Some((got, bound, samples)), Some(want)) = (got, want) else {
                    assert_eq!(got.map(|g| g.0), want, "{kind} {name} over {len} samples");
                    assert!(ordered(function) && len < 2, "{kind} {name}: no answer");
                    continue;
                };
                assert_eq!(samples, len as u64, "{kind} {name}");
                let bit_exact = if ordered(function) {
                    resets(window) <= LISTED_RESETS
                } else {
                    (len as u64) < EXACT_BELOW
                };
                let tolerance = if bit_exact || bound_of(function).relative == 0.0 {
                    0.0
                } else {
                    assert!(bound <= bound_of(function).relative);
                    1e-12
                };
                assert!(
                    same(got, want, tolerance),
                    "{kind} {name} over {len} samples from {first}: {got} against Prometheus' {want}"
                );
            }
        }
    }
}

/// Merging in any grouping gives the same statistics as one pass, within rounding.
#[test]
fn merged_blocks_equal_one_pass() {
    let vs = values("lognormal", 10_000, 9);
    let mut whole = Stats::default();
    whole.extend(&vs);
    for block in [1, 7, 128, 999] {
        let mut merged = Stats::default();
        for chunk in vs.chunks(block) {
            let mut part = Stats::default();
            part.extend(chunk);
            merged.merge(&part);
        }
        for (function, name) in FUNCTIONS.iter().enumerate().filter(|(f, _)| !ordered(*f)) {
            let (got, want) = (merged.answer(function), whole.answer(function));
            assert!(
                same(got, want, 1e-13),
                "{name} in blocks of {block}: {got} against {want}"
            );
        }
    }
}

/// Values near the largest float: Prometheus' sum overflows to +Inf (its compensation
/// must not turn that into NaN) while its running mean stays finite.
#[test]
fn sums_that_overflow_stay_infinite_and_means_finite() {
    let n = 2_000;
    let vs: Vec<f64> = (0..n).map(|i| 1e307 + f64::from(i % 7) * 1e305).collect();
    let ts: Vec<i64> = (0..n).map(|i| i64::from(i) * SCRAPE_MS).collect();
    let mut series = Series::new(StatsPlugin, i64::from(n) * SCRAPE_MS).unwrap();
    series.insert(&ts, &vs).unwrap();
    let bound = |function: usize| StatsPlugin::info().functions[function].bound;
    for (function, name) in FUNCTIONS.iter().enumerate().take(2) {
        let call = Call::new(function, &[]);
        let (got, _, _) = series
            .query(call, bound(function), ts[0], ts[ts.len() - 1])
            .unwrap();
        let want = prometheus(function, &vs, Span::default()).unwrap();
        assert!(same(got, want, 1e-12), "{name}: {got} against Prometheus' {want}");
    }
    let (sum, avg) = (
        prometheus(1, &vs, Span::default()),
        prometheus(0, &vs, Span::default()),
    );
    assert!(sum.unwrap().is_infinite() && avg.unwrap().is_finite());
}

/// A range query's every step, as a panel asks it, against Prometheus' answer over that
/// step's window: windows from a few samples (the exact path for sums) to a day (the
/// summaries), steps that start and end between samples.
#[test]
fn range_queries_equal_prometheus_at_every_step() {
    let n = 20_000;
    let vs = values("counter with a few resets", n, 77);
    let ts: Vec<i64> = (0..n as i64).map(|i| i * SCRAPE_MS + 1_234).collect();
    let mut series = Series::new(StatsPlugin, n as i64 * SCRAPE_MS).unwrap();
    series.insert(&ts, &vs).unwrap();
    let bound_of = |function: usize| StatsPlugin::info().functions[function].bound;
    for window in [45_000, 300_000, 3_600_000, 86_400_000] {
        let (start, step) = (ts[0] + window / 2, 617_000);
        let end = ts[n - 1] + 20_000;
        for (function, name) in FUNCTIONS.iter().enumerate() {
            let answers = series.query_range(
                Call::new(function, &[]),
                bound_of(function),
                (start, end, step, window),
            );
            for (k, got) in answers.iter().enumerate() {
                let t = start + k as i64 * step;
                let (i0, i1) = (
                    ts.partition_point(|&x| x < t - window),
                    ts.partition_point(|&x| x <= t),
                );
                let span = Span {
                    start_ms: t - window,
                    end_ms: t,
                    first_ms: ts.get(i0).copied().unwrap_or_default(),
                    last_ms: ts.get(i1.wrapping_sub(1)).copied().unwrap_or_default(),
                };
                let want = if i1 > i0 {
                    prometheus(function, &vs[i0..i1], span)
                } else {
                    None
                };
                let tolerance = if ordered(function) || ((i1 - i0) as u64) < EXACT_BELOW {
                    0.0
                } else {
                    1e-12
                };
                let agree = match (got.map(|g| g.0), want) {
                    (Some(g), Some(w)) => same(g, w, tolerance),
                    (g, w) => g.is_none() && w.is_none(),
                };
                assert!(
                    agree,
                    "{name}[{window}ms] at step {k}: {got:?} against Prometheus' {want:?}"
                );
            }
        }
    }
}
