//! `Series` natively, with the two built-in kinds of summary: answers against the exact
//! ones across retention, the memory a day of samples takes, and snapshots.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_plugin_quantile::Quantile;
use sketch_plugin_sdk::{Bound, Call, Error, FREQUENCY_BOUND, FrequencyPlugin, Plugin, Series, SortedWindow};

const QUANTILE_BOUND: Bound = Bound {
    relative: 0.01,
    min_samples: 1000,
};
const FREQUENCY: Bound = Bound {
    relative: FREQUENCY_BOUND,
    min_samples: 1000,
};
const SCRAPE_MS: i64 = 10_000;
const DAY: usize = 8640;

fn values(kind: &str, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    match kind {
        "lognormal" => LogNormal::new(3.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        "zipf" => Zipf::new(1000.0, 1.2)
            .unwrap()
            .sample_iter(&mut rng)
            .take(n)
            .collect(),
        other => panic!("unknown kind {other}"),
    }
}

fn timestamps(n: usize) -> Vec<i64> {
    (0..n as i64).map(|i| 1_700_000_000_000 + i * SCRAPE_MS).collect()
}

fn fill<P: Plugin>(plugin: P, retention_ms: i64, values: &[f64]) -> Series<P> {
    let mut series = Series::new(plugin, retention_ms).unwrap();
    let ts = timestamps(values.len());
    // Remote-write sized batches.
    for (t, v) in ts.chunks(180).zip(values.chunks(180)) {
        series.insert(t, v).unwrap();
    }
    series
}

fn exact_quantile(phi: f64, window: &[f64]) -> f64 {
    let mut w = SortedWindow::default();
    sketch_plugin_sdk::Window::fill(&mut w, window);
    w.quantile(phi)
}

fn relative(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        (got - want).abs() / want.abs()
    }
}

#[test]
fn answers_hold_their_bounds_across_retention_and_window_sizes() {
    for kind in ["lognormal", "zipf"] {
        let v = values(kind, 3 * DAY, 7);
        let retention = 26 * 3_600_000;
        let mut series = fill(Quantile, retention, &v);
        let ts = timestamps(v.len());
        let newest = *ts.last().unwrap();
        for window_samples in [1usize, 100, 999, 1000, 2049, 5000, DAY] {
            let t1 = newest - 234 * SCRAPE_MS;
            let t0 = t1 - (window_samples as i64 - 1) * SCRAPE_MS;
            let (i0, i1) = (ts.partition_point(|&t| t < t0), ts.partition_point(|&t| t <= t1));
            let call = Call::new(0, &[0.99]);
            let (got, bound, n) = series.query(call, QUANTILE_BOUND, t0, t1).unwrap();
            assert_eq!(n as usize, i1 - i0, "{kind} {window_samples}");
            let want = exact_quantile(0.99, &v[i0..i1]);
            let error = relative(got, want);
            assert!(error <= bound, "{kind} window {window_samples}: {got} vs {want}");
            if window_samples < 1000 {
                assert_eq!(bound, 0.0, "{kind} {window_samples}: exact below 1,000");
            }
        }
        assert_eq!(
            series.query(Call::new(0, &[0.5]), QUANTILE_BOUND, 0, ts[0]),
            None,
            "{kind}: expired"
        );
    }
}

#[test]
fn a_day_of_both_kinds_takes_at_most_sixteen_bytes_a_sample_for_all_four_functions() {
    let mut total = 0;
    for kind in ["lognormal", "zipf"] {
        let v = values(kind, DAY + DAY / 12, 11);
        let retention = 26 * 3_600_000;
        let quantile = fill(Quantile, retention, &v).memory_bytes();
        let frequency = fill(FrequencyPlugin, retention, &v).memory_bytes();
        let per_sample = |bytes: usize| bytes as f64 / v.len() as f64;
        println!(
            "{kind}: quantile {:.2} B/sample, frequency {:.2} B/sample",
            per_sample(quantile),
            per_sample(frequency)
        );
        for bytes in [quantile, frequency] {
            assert!(
                per_sample(bytes) <= 12.0,
                "{kind}: {:.2} B/sample",
                per_sample(bytes)
            );
        }
        total += quantile + frequency;
    }
    let per_sample = total as f64 / (2 * (DAY + DAY / 12)) as f64;
    println!("all four functions: {per_sample:.2} B/sample");
    assert!(
        per_sample <= 16.0,
        "{per_sample:.2} B/sample for all four functions"
    );
}

#[test]
fn a_restored_snapshot_answers_identically() {
    for kind in ["lognormal", "zipf"] {
        let v = values(kind, DAY + 700, 3);
        let mut quantile = fill(Quantile, 86_400_000, &v);
        let mut frequency = fill(FrequencyPlugin, 86_400_000, &v);
        let mut quantile_again = Series::restore(Quantile, 86_400_000, &quantile.snapshot()).unwrap();
        let mut frequency_again =
            Series::restore(FrequencyPlugin, 86_400_000, &frequency.snapshot()).unwrap();
        let ts = timestamps(v.len());
        let range = (ts[0], *ts.last().unwrap(), 60_000, 3_600_000);
        let call = Call::new(0, &[0.9]);
        assert_eq!(
            quantile.query_range(call, QUANTILE_BOUND, range),
            quantile_again.query_range(call, QUANTILE_BOUND, range)
        );
        assert_eq!(quantile.coverage(), quantile_again.coverage());
        for function in 0..3 {
            let call = Call::new(function, &[]);
            let day = (ts[0], *ts.last().unwrap(), 600_000, 86_400_000);
            assert_eq!(
                frequency.query_range(call, FREQUENCY, day),
                frequency_again.query_range(call, FREQUENCY, day),
                "{kind} {function}"
            );
        }
        assert_eq!(quantile.memory_bytes(), quantile_again.memory_bytes());
    }
}

#[test]
fn damaged_snapshots_are_refused_not_trusted() {
    let v = values("lognormal", 2000, 5);
    let snapshot = fill(Quantile, 86_400_000, &v).snapshot();
    let mut foreign = snapshot.clone();
    foreign[7] = b'1';
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("truncated", snapshot[..snapshot.len() - 3].to_vec()),
        ("another version", foreign),
        ("trailing bytes", [snapshot.as_slice(), &[0]].concat()),
    ];
    for (what, bytes) in cases {
        match Series::restore(Quantile, 86_400_000, &bytes) {
            Err(Error::BadSnapshot(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A window's edge blocks read as a block's summary less the samples outside the window
/// (or, at the newest sample, as the open block's summary kept between queries), and a
/// window start moved on from the last query's kept summary, give the histogram of
/// exactly the window's samples: the same answer to the last bit as a histogram of
/// those samples, whichever way is cheaper and as samples keep coming.
#[test]
fn edge_blocks_from_summaries_equal_the_window_histogram() {
    use sketch_plugin_sdk::{BLOCK_SAMPLES, LogHistogram, Summary};
    let all = values("lognormal", 3 * DAY, 11);
    let ts = timestamps(all.len());
    let block = BLOCK_SAMPLES as usize;
    let mut series = Series::new(Quantile, 2 * DAY as i64 * SCRAPE_MS).unwrap();
    let call = Call::new(0, &[0.99]);
    // (samples written so far, first sample of the window, one past its last)
    let cases = [
        (DAY + 37, 37, DAY + 37),
        (DAY + 37, 1, DAY + 37),
        (DAY + 38, 2, DAY + 38),
        (DAY + 300, 300, DAY + 300),
        // The start moving on with the same end: taken out of the kept summary, across
        // a block boundary, and too far to take out.
        (DAY + 300, 301, DAY + 300),
        (DAY + 300, 303, DAY + 300),
        (DAY + 300, 511, DAY + 300),
        (DAY + 300, 513, DAY + 300),
        (DAY + 300, 900, DAY + 300),
        // A start on a block's first sample, then just before it.
        (DAY + 300, 2 * block, DAY + 300),
        (DAY + 300, 2 * block - 1, DAY + 300),
        (DAY + 300, 300, DAY + 10),
        (DAY + 300, block + 500, DAY + 290),
        (DAY + 300, block * 3 + 511, DAY + 299),
        (2 * DAY, 3 * block - 1, 2 * DAY),
        (2 * DAY + 1, 5 * block + 250, 2 * DAY - 5),
        (2 * DAY + 1, 5 * block + 256, 2 * DAY + 1),
    ];
    let mut written = 0;
    for (upto, first, end) in cases {
        series.insert(&ts[written..upto], &all[written..upto]).unwrap();
        written = upto;
        let mut want = LogHistogram::new(0.008);
        want.extend(&all[first..end]);
        // The window's time span, ending past the newest sample when `end` is it, and
        // starting anywhere between the sample before `first` and `first` (the second
        // time found without decompressing).
        let t1 = if end == upto {
            ts[upto - 1] + 4_000
        } else {
            ts[end - 1]
        };
        for t0 in [ts[first] - 1, ts[first] - SCRAPE_MS + 1] {
            let (got, _, n) = series.query(call, QUANTILE_BOUND, t0, t1).unwrap();
            assert_eq!(n, (end - first) as u64, "case ({upto}, {first}, {end}) from {t0}");
            assert_eq!(
                got.to_bits(),
                want.quantile(0.99).to_bits(),
                "case ({upto}, {first}, {end}) from {t0}: {got} vs {}",
                want.quantile(0.99)
            );
        }
    }
}
