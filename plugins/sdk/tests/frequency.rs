//! The frequency summaries natively: a tree of merged summaries equals one pass while it
//! is exact, and past its capacity its estimates stay within 2% of the exact statistics
//! on skewed, uniform and all-distinct data, whatever the block layout.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Uniform, Zipf};
use sketch_plugin_sdk::{
    FrequencySample, FrequencySummary, FrequencyWindow, Moments, SAMPLE_SIZE, Summary, Window,
};

fn values(distribution: &str, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    match distribution {
        "lognormal" => LogNormal::new(3.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "zipf-integers" => Zipf::new(1_000_000.0, 1.1)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "zipf-steep" => Zipf::new(1_000_000.0, 2.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "uniform-integers" => Uniform::new_inclusive(1, 20_000)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .map(f64::from)
            .collect(),
        "constant-with-noise" => (0..n)
            .map(|i| if i % 10 == 0 { i as f64 } else { 42.0 })
            .collect(),
        other => panic!("unknown distribution {other}"),
    }
}

fn exact(values: &[f64]) -> Moments {
    let mut w = FrequencyWindow::default();
    w.fill(values);
    w.moments()
}

/// Summaries of `chunk`-sized blocks merged pairwise, the way the series tree builds them.
fn tree<S: Summary + Default>(values: &[f64], chunk: usize) -> S {
    let mut nodes: Vec<S> = values
        .chunks(chunk)
        .map(|c| {
            let mut s = S::default();
            s.extend(c);
            s
        })
        .collect();
    while nodes.len() > 1 {
        nodes = nodes
            .chunks(2)
            .map(|pair| {
                let mut s = pair[0].clone();
                if let Some(right) = pair.get(1) {
                    s.merge(right);
                }
                s
            })
            .collect();
    }
    nodes.pop().unwrap_or_default()
}

fn relative(estimate: f64, exact: f64) -> f64 {
    if estimate == exact {
        0.0
    } else {
        (estimate - exact).abs() / exact.abs()
    }
}

#[test]
fn a_sample_is_exact_below_its_capacity_and_merges_like_one_pass() {
    let v = values("uniform-integers", 200_000, 1);
    let few: Vec<f64> = v.iter().map(|x| x % 5000.0).collect();
    let mut one = FrequencySample::default();
    one.extend(&few);
    let merged: FrequencySample = tree(&few, 512);
    assert!(one.is_exact() && merged.is_exact());
    let truth = exact(&few);
    for got in [one.moments(200_000), merged.moments(200_000)] {
        assert_eq!(
            (got.distinct, got.sum_squares),
            (truth.distinct, truth.sum_squares)
        );
        assert!(
            relative(got.sum_f_log_f, truth.sum_f_log_f) < 1e-12,
            "{got:?} vs {truth:?}"
        );
    }
    let summary: FrequencySummary = tree(&few, 512);
    assert_eq!(summary.distinct(), truth.distinct, "5,000 keys are held exactly");
    let many: FrequencySample = tree(&v, 512);
    assert!(!many.is_exact(), "20,000 distinct values exceed {SAMPLE_SIZE}");
}

#[test]
fn estimates_past_the_capacity_stay_within_two_percent() {
    let mut worst = [0.0f64; 3];
    for distribution in [
        "lognormal",
        "zipf-integers",
        "zipf-steep",
        "uniform-integers",
        "constant-with-noise",
    ] {
        for (n, seed) in [(9_000, 2), (60_000, 3), (333_333, 4), (1_000_000, 5)] {
            let v = values(distribution, n, seed);
            let truth = exact(&v);
            for chunk in [512, 4096] {
                let sample: FrequencySample = tree(&v, chunk);
                let hll: FrequencySummary = tree(&v, chunk);
                let got = sample.moments(n as u64);
                let errors = [
                    relative(hll.distinct(), truth.distinct),
                    relative(got.l2(), truth.l2()),
                    relative(got.entropy(n as u64), truth.entropy(n as u64)),
                ];
                for (w, e) in worst.iter_mut().zip(errors) {
                    *w = w.max(e);
                }
                let what = format!("{distribution} n={n} blocks of {chunk}");
                assert!(
                    errors[0] <= 0.02,
                    "{what}: distinct {} vs {}",
                    hll.distinct(),
                    truth.distinct
                );
                assert!(errors[1] <= 0.02, "{what}: l2 {} vs {}", got.l2(), truth.l2());
                assert!(
                    errors[2] <= 0.02,
                    "{what}: entropy {} vs {}",
                    got.entropy(n as u64),
                    truth.entropy(n as u64)
                );
            }
        }
    }
    println!("worst relative errors (distinct, l2, entropy): {worst:?}");
}
