//! The built-in plugins against exact answers computed here, through the wasm boundary:
//! several distributions, windows from 10 to 1,000,000 samples, window edges between
//! sample timestamps, range queries, and snapshot → restore.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod guest_support;

use std::collections::HashMap;

use guest_support::{config, load, sketch};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Uniform, Zipf};
use sketch_proxy::plugin_host::{Estimate, PluginSet, RangeRequest, Sketch};

/// Samples are 1 s apart: sample `i` is at `i * 1000` ms.
const STEP_MS: i64 = 1000;
const SAMPLES: usize = 1_000_000;
const PHIS: [f64; 6] = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];

fn series(distribution: &str) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let draw = |d: &dyn Fn(&mut StdRng) -> f64, rng: &mut StdRng| (0..SAMPLES).map(|_| d(rng)).collect();
    match distribution {
        "lognormal" => {
            let d = LogNormal::new(3.0, 1.0).unwrap();
            draw(&|r| d.sample(r), &mut rng)
        }
        "zipf-integers" => {
            let d = Zipf::new(1_000_000.0, 1.1).unwrap();
            draw(&|r| d.sample(r), &mut rng)
        }
        "zipf-few" => {
            let d = Zipf::new(50.0, 1.5).unwrap();
            draw(&|r| d.sample(r), &mut rng)
        }
        "uniform" => {
            let d = Uniform::new(1.0, 1000.0).unwrap();
            draw(&|r| d.sample(r), &mut rng)
        }
        "uniform-integers" => {
            let d = Uniform::new_inclusive(1, 20_000).unwrap();
            draw(&|r| f64::from(d.sample(r)), &mut rng)
        }
        other => panic!("unknown distribution {other}"),
    }
}

/// Exact answers the way Prometheus (and PromSketch's definitions) compute them.
struct Exact {
    sorted: Vec<f64>,
    counts: Vec<u64>,
}

impl Exact {
    fn new(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut freq: HashMap<u64, u64> = HashMap::new();
        for v in values {
            *freq.entry(if *v == 0.0 { 0 } else { v.to_bits() }).or_default() += 1;
        }
        Self {
            sorted,
            counts: freq.into_values().collect(),
        }
    }

    fn quantile(&self, phi: f64) -> f64 {
        let n = self.sorted.len() as f64;
        let rank = phi * (n - 1.0);
        let lo = rank.floor().max(0.0);
        let hi = (lo + 1.0).min(n - 1.0);
        let w = rank - rank.floor();
        self.sorted[lo as usize] * (1.0 - w) + self.sorted[hi as usize] * w
    }

    fn answer(&self, function: &str, args: &[f64]) -> f64 {
        let n = self.sorted.len() as f64;
        match function {
            "quantile_over_time" => self.quantile(args[0]),
            "distinct_over_time" => self.counts.len() as f64,
            "l2_over_time" => self.counts.iter().map(|&c| (c * c) as f64).sum::<f64>().sqrt(),
            "entropy_over_time" => -self
                .counts
                .iter()
                .map(|&c| c as f64 / n)
                .map(|p| p * p.log2())
                .sum::<f64>(),
            other => panic!("no reference for {other}"),
        }
    }
}

fn relative_error(estimate: f64, exact: f64) -> f64 {
    if estimate == exact {
        0.0
    } else {
        (estimate - exact).abs() / exact.abs().max(f64::MIN_POSITIVE)
    }
}

/// Each built-in function with its scalar-argument lists.
fn calls() -> Vec<(&'static str, Vec<f64>)> {
    let mut calls: Vec<(&str, Vec<f64>)> = PHIS.iter().map(|&p| ("quantile_over_time", vec![p])).collect();
    calls.extend(["distinct_over_time", "entropy_over_time", "l2_over_time"].map(|f| (f, vec![])));
    calls
}

fn sketches(set: &PluginSet, values: &[f64]) -> HashMap<&'static str, Sketch> {
    let timestamps: Vec<i64> = (0..values.len() as i64).map(|i| i * STEP_MS).collect();
    let mut out = HashMap::new();
    for function in [
        "quantile_over_time",
        "distinct_over_time",
        "entropy_over_time",
        "l2_over_time",
    ] {
        let s = sketch(set.for_function(function).unwrap());
        for (ts, vs) in timestamps.chunks(10_000).zip(values.chunks(10_000)) {
            s.insert(ts, vs).unwrap();
        }
        out.insert(function, s);
    }
    out
}

/// Checks one answer: exact (to rounding) with bound 0 below 1,000 samples, within the
/// claimed bound above. Returns the relative error.
fn check(what: &str, got: Estimate, exact: f64, n: usize, claimed: f64) -> f64 {
    let err = relative_error(got.value, exact);
    assert_eq!(got.samples, n as u64, "{what}: sample count");
    if n < 1000 {
        assert_eq!(got.bound, 0.0, "{what}: small windows are exact");
        assert!(err <= 1e-9, "{what}: {} vs exact {exact}", got.value);
    } else {
        assert!(
            got.bound == 0.0 || got.bound == claimed,
            "{what}: bound {}",
            got.bound
        );
        // An exact plugin (bound 0) is held to floating-point rounding.
        assert!(
            err <= claimed.max(1e-9),
            "{what}: {} vs exact {exact} is {:.3}% off, claimed {claimed}",
            got.value,
            err * 100.0
        );
    }
    err
}

#[test]
fn instant_answers_hold_the_claimed_bounds() {
    let (set, _) = load(None);
    // (first sample, samples): edges fall half-way between samples (t0 = first·1000 − 500).
    let windows = [
        (0, 10),
        (123_456, 10),
        (999, 150),
        (77_777, 999),
        (5, 1000),
        (400_001, 1001),
        (31, 4321),
        (250_000, 60_000),
        (3, 333_333),
        (0, SAMPLES),
    ];
    for distribution in [
        "lognormal",
        "zipf-integers",
        "zipf-few",
        "uniform",
        "uniform-integers",
    ] {
        let values = series(distribution);
        let sketches = sketches(&set, &values);
        let mut worst: HashMap<&str, f64> = HashMap::new();
        for (first, n) in windows {
            let exact = Exact::new(&values[first..first + n]);
            let t0 = first as i64 * STEP_MS - 500;
            let t1 = (first + n - 1) as i64 * STEP_MS + 500;
            for (function, args) in calls() {
                let s = &sketches[function];
                let claimed = s.plugin().info().functions[0].bound.relative;
                let got = s.query(function, &args, t0, t1).unwrap().unwrap();
                let what = format!("{distribution} {function}{args:?} over {n} samples from {first}");
                let err = check(&what, got, exact.answer(function, &args), n, claimed);
                let w = worst.entry(function).or_default();
                *w = w.max(err);
            }
        }
        println!("{distribution}: worst relative errors {worst:?}");
    }
}

#[test]
fn range_answers_match_per_step_exact_answers() {
    let (set, _) = load(None);
    let values: Vec<f64> = series("zipf-few").into_iter().take(40_000).collect();
    let sketches = sketches(&set, &values);
    // (window in samples, step in samples): sliding exact windows and tree-answered ones.
    for (window, step) in [(360, 6), (999, 37), (5000, 500)] {
        let range = RangeRequest {
            start_ms: 10_000 * STEP_MS + 250,
            end_ms: 30_000 * STEP_MS,
            step_ms: step * STEP_MS,
            window_ms: window * STEP_MS,
        };
        for (function, args) in calls() {
            let s = &sketches[function];
            let claimed = s.plugin().info().functions[0].bound.relative;
            let answers = s.query_range(function, &args, range).unwrap();
            assert_eq!(
                answers.len() as i64,
                (range.end_ms - range.start_ms) / range.step_ms + 1
            );
            for (i, answer) in answers.into_iter().enumerate() {
                let t = range.start_ms + i as i64 * range.step_ms;
                // Samples with timestamps in [t - window, t].
                let first = ((t - range.window_ms) as f64 / STEP_MS as f64).ceil() as usize;
                let last = (t / STEP_MS) as usize;
                let exact = Exact::new(&values[first..=last]);
                let what = format!("{function}{args:?} window {window} step {i}");
                check(
                    &what,
                    answer.unwrap(),
                    exact.answer(function, &args),
                    last + 1 - first,
                    claimed,
                );
            }
        }
    }
}

/// An answer as exact bits, so identical means identical (NaN included).
fn bits(e: Option<Estimate>) -> Option<(u64, u64, u64)> {
    e.map(|e| (e.value.to_bits(), e.bound.to_bits(), e.samples))
}

#[test]
fn snapshot_and_restore_give_identical_answers() {
    let (set, _) = load(None);
    let values: Vec<f64> = series("lognormal").into_iter().take(50_000).collect();
    let timestamps: Vec<i64> = (0..values.len() as i64).map(|i| i * STEP_MS).collect();
    let range = RangeRequest {
        start_ms: 20_000_000,
        end_ms: 49_000_000,
        step_ms: 60_000,
        window_ms: 3_600_000,
    };
    for (function, args) in calls() {
        let plugin = set.for_function(function).unwrap();
        // A 10,000 s retention, so restore must also keep block alignment after expiry.
        let cfg = config(10_000_000, &[]);
        let original = plugin.create(1, &cfg).unwrap();
        original.insert(&timestamps, &values).unwrap();
        let restored = plugin.restore(2, &cfg, &original.snapshot().unwrap()).unwrap();
        assert_eq!(
            original.coverage().unwrap(),
            restored.coverage().unwrap(),
            "{function}"
        );
        for (t0, t1) in [
            (0, 49_999_000),
            (41_000_500, 49_000_000),
            (45_000_000, 45_010_000),
        ] {
            assert_eq!(
                bits(original.query(function, &args, t0, t1).unwrap()),
                bits(restored.query(function, &args, t0, t1).unwrap()),
                "{function}{args:?} [{t0}, {t1}]"
            );
        }
        let answers = |s: &Sketch| {
            s.query_range(function, &args, range)
                .unwrap()
                .into_iter()
                .map(bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(answers(&original), answers(&restored), "{function}{args:?} range");
        let garbage = plugin.restore(3, &cfg, b"definitely not a snapshot").unwrap_err();
        assert!(garbage.to_string().contains("bad snapshot"), "{garbage}");
    }
}
