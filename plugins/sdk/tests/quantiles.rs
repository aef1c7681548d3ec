//! Quantiles follow Prometheus 2.42: NaN sorts first, linear interpolation at φ(n−1),
//! ±Inf outside [0, 1]; the log histogram reads back each order statistic within α.

use sketch_plugin_sdk::{LogHistogram, SortedWindow, Summary, Window};

#[test]
fn sorted_window_orders_like_prometheus() {
    let mut w = SortedWindow::default();
    for v in [
        3.0,
        f64::NAN,
        -1.0,
        0.0,
        2.5,
        f64::NEG_INFINITY,
        f64::INFINITY,
        1.0,
    ] {
        w.push(v);
    }
    let order: Vec<String> = (0..8).map(|i| w.nth(i).to_string()).collect();
    assert_eq!(order, ["NaN", "-inf", "-1", "0", "1", "2.5", "3", "inf"]);
    w.pop(3.0);
    w.pop(f64::NAN);
    assert_eq!(w.len(), 6);
    // (φ, expected) over [-inf, -1, 0, 1, 2.5, inf]
    let cases = [
        (-0.5, f64::NEG_INFINITY),
        (1.5, f64::INFINITY),
        (0.5, 0.5),
        (0.7, 1.75),
        (0.2, -1.0),
    ];
    for (phi, want) in cases {
        assert_eq!(w.quantile(phi), want, "φ={phi}");
    }
    assert!(w.quantile(f64::NAN).is_nan());
    w.fill(&[2.0, 1.0]);
    assert_eq!(w.quantile(0.25), 1.25);
}

#[test]
fn log_histogram_reads_order_statistics_within_alpha() {
    let alpha = 0.01;
    let values: Vec<f64> = (1..=2000)
        .map(|i| f64::from(i).powf(1.7) * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let mut h = LogHistogram::new(alpha);
    h.extend(&values);
    h.add(0.0);
    let mut sorted = values.clone();
    sorted.push(0.0);
    sorted.sort_by(f64::total_cmp);
    for (i, exact) in sorted.iter().enumerate() {
        let got = h.nth(i as u64);
        assert!(
            (got - exact).abs() <= alpha * exact.abs() * (1.0 + 1e-12),
            "rank {i}: {got} vs {exact}"
        );
    }
    assert_eq!(h.count(), 2001);
}

#[test]
fn replace_equals_pop_then_push() {
    let start = [5.0, 1.0, 9.0, 3.0, 7.0, 3.0];
    // (leaving, entering): moves right, moves left, stays, duplicates
    let steps = [
        (5.0, 8.0),
        (1.0, 0.5),
        (9.0, 9.0),
        (3.0, 3.0),
        (7.0, -2.0),
        (3.0, 100.0),
    ];
    let (mut a, mut b) = (SortedWindow::default(), SortedWindow::default());
    a.fill(&start);
    b.fill(&start);
    for (old, new) in steps {
        a.replace(old, new);
        b.pop(old);
        b.push(new);
        let (ka, kb): (Vec<f64>, Vec<f64>) = (
            (0..6).map(|i| a.nth(i)).collect(),
            (0..6).map(|i| b.nth(i)).collect(),
        );
        assert_eq!(ka, kb, "after replacing {old} by {new}");
    }
}

/// Adding values at once, one by one, or through packed halves merged gives the same
/// histogram, NaN and infinities included, and magnitudes too far apart for one dense
/// span of buckets.
#[test]
fn log_histogram_extend_add_and_packed_merge_agree() {
    let mut values: Vec<f64> = (0..3000)
        .map(|i| (f64::from(i) * 0.37).sin() * f64::from(i % 97 + 1))
        .collect();
    values.extend([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1e-310]);
    values.extend([1e-250, 1e250, -1e200, 5e-300, 1e250, -1e-200, 7e180]);
    let (mut batch, mut single) = (LogHistogram::new(0.008), LogHistogram::new(0.008));
    batch.extend(&values);
    for &v in &values {
        single.add(v);
    }
    let (mut left, mut right) = (LogHistogram::new(0.008), LogHistogram::new(0.008));
    left.extend(&values[..1234]);
    right.extend(&values[1234..]);
    left.shrink();
    right.shrink();
    assert!(
        left.memory_bytes() < 1234 * 2,
        "packed: {} B",
        left.memory_bytes()
    );
    left.merge(&right);
    assert_eq!(batch.count(), values.len() as u64);
    for rank in 0..values.len() as u64 {
        let (a, b, c) = (batch.nth(rank), single.nth(rank), left.nth(rank));
        assert!(
            a.total_cmp(&b).is_eq() && a.total_cmp(&c).is_eq(),
            "rank {rank}: {a} {b} {c}"
        );
    }
}
