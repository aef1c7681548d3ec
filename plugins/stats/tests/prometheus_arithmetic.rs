//! The stats plugin natively, against Prometheus 2.42's own sequential arithmetic over
//! the same window (`OrderedWindow`, the functions of `promql/functions.go`): on several
//! distributions, with NaN and infinities mixed in, and windows of every size from a
//! few samples to many blocks, placed across block edges. Count, min, max and present
//! must be equal to the bit; sums, means and variances within 1e-12 relative (the bound
//! claimed is 1e-9), and equal to the bit below the exact threshold.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Normal, Zipf};
use sketch_plugin_sdk::{Call, Plugin, Series, Summary, Window};
use sketch_plugin_stats::{EXACT_BELOW, FUNCTIONS, OrderedWindow, Stats, StatsPlugin};

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

/// Prometheus' answer over `window`.
fn prometheus(function: usize, window: &[f64]) -> f64 {
    let mut ordered = OrderedWindow::default();
    ordered.fill(window);
    ordered.answer(function)
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
        for (first, len) in windows {
            let window = &vs[first..first + len];
            let (t0, t1) = (ts[first], ts[first + len - 1]);
            for (function, name) in FUNCTIONS.iter().enumerate() {
                let call = Call { function, args: &[] };
                let (got, bound, samples) = series.query(call, bound_of(function), t0, t1).unwrap();
                let want = prometheus(function, window);
                assert_eq!(samples, len as u64, "{kind} {name}");
                let tolerance = if (len as u64) < EXACT_BELOW || bound_of(function).relative == 0.0 {
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
        for (function, name) in FUNCTIONS.iter().enumerate() {
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
        let call = Call { function, args: &[] };
        let (got, _, _) = series
            .query(call, bound(function), ts[0], ts[ts.len() - 1])
            .unwrap();
        let want = prometheus(function, &vs);
        assert!(same(got, want, 1e-12), "{name}: {got} against Prometheus' {want}");
    }
    assert!(prometheus(1, &vs).is_infinite() && prometheus(0, &vs).is_finite());
}
