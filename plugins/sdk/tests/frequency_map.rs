//! Frequency maps merge like one pass, and the series answers exactly on both sides of
//! their capacity (merged maps below it, raw samples above it).

#![allow(clippy::unwrap_used, reason = "tests")]

use sketch_plugin_sdk::{
    Bound, Call, FrequencyMap, FrequencyPlugin, FrequencyStatistic, FrequencyWindow, Moments, Plugin, Series,
    Summary, Window,
};

/// Deterministic heavy-tailed integers (xorshift + inverse power law).
fn skewed(n: usize, spread: f64) -> Vec<f64> {
    let mut x: u64 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (1.0 / (1.0 - u * 0.999_999)).powf(spread).floor()
        })
        .collect()
}

fn exact_distinct(values: &[f64]) -> f64 {
    let mut w = FrequencyWindow::default();
    w.fill(values);
    w.moments().distinct
}

#[test]
fn merged_maps_equal_a_single_pass_until_they_overflow() {
    // (spread of the values, capacity, whether one pass overflows)
    for (spread, capacity, overflows) in [(0.5, 4096, false), (10.0, 256, true)] {
        let values = skewed(100_000, spread);
        let mut one = FrequencyMap::new(capacity);
        one.extend(&values);
        let mut merged = FrequencyMap::new(capacity);
        for chunk in values.chunks(512) {
            let mut block = FrequencyMap::new(capacity);
            block.extend(chunk);
            merged.merge(&block);
        }
        assert_eq!(one.moments().is_none(), overflows);
        assert_eq!(format!("{:?}", one.moments()), format!("{:?}", merged.moments()));
        if let Some(m) = one.moments() {
            assert_eq!(m.distinct, exact_distinct(&values));
        }
    }
}

#[derive(Debug)]
struct Distinct;

impl FrequencyStatistic for Distinct {
    const PLUGIN: &'static str = "test";
    const VERSION: &'static str = "0.0.0";
    const FUNCTION: &'static str = "test_over_time";
    const DESCRIPTION: &'static str = "";
    fn answer(moments: Moments, _samples: u64) -> f64 {
        moments.distinct
    }
}

#[test]
fn series_answers_are_exact_on_both_sides_of_the_capacity() {
    // Few distinct values (merged maps answer) and many (over 4,096: raw samples answer).
    for spread in [0.3, 10.0] {
        let values = skewed(200_000, spread);
        let ts: Vec<i64> = (0..values.len() as i64).collect();
        let plugin = FrequencyPlugin::<Distinct>::configure(&[]).unwrap();
        let mut series = Series::new(plugin, i64::MAX / 4).unwrap();
        series.insert(&ts, &values).unwrap();
        let call = Call {
            function: 0,
            args: &[],
        };
        let bound = Bound {
            relative: 0.0,
            min_samples: 1000,
        };
        for (a, b) in [(0usize, 200_000usize), (3, 150_000), (1000, 61_000), (7, 900)] {
            let got = series.query(call, bound, a as i64, b as i64 - 1).unwrap();
            assert_eq!(
                (got.0, got.1),
                (exact_distinct(&values[a..b]), 0.0),
                "spread {spread} [{a}, {b})"
            );
        }
    }
}
