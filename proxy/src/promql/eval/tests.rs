//! Table tests of the evaluator over in-memory series: the proxy's exact extension
//! functions against hand-computed values, range evaluation against instant
//! evaluation, and the limits. Prometheus' own semantics are checked against real
//! Prometheus by the conformance runner (`proxy/tests/conformance.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::testing::{LOOKBACK_MS, data_for, run, series};
use super::value::Series;
use super::{Answer, EvalError, Interrupt, Limits, Range, evaluate, plan};
use crate::promql;

/// The single value of an instant query's vector answer.
fn instant_value(query: &str, t_ms: i64, store: &[Series]) -> Option<f64> {
    match run(query, Range::instant(t_ms), store, 1_000_000).unwrap() {
        Answer::Vector(v) => {
            assert!(v.len() <= 1, "{query}: {v:?}");
            v.first().map(|s| s.1)
        }
        other => panic!("{query}: {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn extension_functions_match_hand_computed_values() {
    let stale = None;
    // m: 1 1 2 3 3 3 stale 5 at t = 0, 10, …, 70 s.
    let store = vec![series(
        &[("__name__", "m"), ("job", "a")],
        &[
            Some(1.0),
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(3.0),
            Some(3.0),
            stale,
            Some(5.0),
        ],
    )];
    let entropy = |counts: &[f64]| {
        let n: f64 = counts.iter().sum();
        -counts.iter().map(|c| c / n * (c / n).log2()).sum::<f64>()
    };
    let l2 = |counts: &[f64]| counts.iter().map(|c| c * c).sum::<f64>().sqrt();
    // (query, time in s, expected; None for no result)
    let cases: Vec<(&str, i64, Option<f64>)> = vec![
        // Window [0, 50]: values 1 1 2 3 3 3.
        ("distinct_over_time(m[50s])", 50, Some(3.0)),
        ("l2_over_time(m[50s])", 50, Some(l2(&[2.0, 1.0, 3.0]))),
        ("entropy_over_time(m[50s])", 50, Some(entropy(&[2.0, 1.0, 3.0]))),
        // The stale marker at 60 s is not a sample: window [20, 70] is 2 3 3 3 5.
        ("distinct_over_time(m[50s])", 70, Some(3.0)),
        ("l2_over_time(m[50s])", 70, Some(l2(&[1.0, 3.0, 1.0]))),
        ("entropy_over_time(m[50s])", 70, Some(entropy(&[1.0, 3.0, 1.0]))),
        // One sample in the window.
        ("distinct_over_time(m[5s])", 20, Some(1.0)),
        ("l2_over_time(m[5s])", 20, Some(1.0)),
        ("entropy_over_time(m[5s])", 20, Some(0.0)),
        // Only the stale marker in the window: no sample, no result.
        ("distinct_over_time(m[5s])", 60, None),
        ("entropy_over_time(m[5s])", 60, None),
        // All equal values: entropy 0, L2 = n.
        ("entropy_over_time(m[20s])", 50, Some(0.0)),
        ("l2_over_time(m[20s])", 50, Some(3.0)),
        // Combined with the rest of PromQL.
        ("sum by (job) (distinct_over_time(m[50s])) * 2", 50, Some(6.0)),
        ("distinct_over_time(m[50s] offset 20s)", 70, Some(3.0)),
        ("distinct_over_time(m[30s] @ 30)", 70, Some(3.0)),
        // Subquery steps 30..70 s; at 30 s the window [10, 30] holds 1 2 3.
        (
            "max_over_time(distinct_over_time(m[20s])[40s:10s])",
            70,
            Some(3.0),
        ),
        (
            "min_over_time(distinct_over_time(m[20s])[40s:10s])",
            70,
            Some(1.0),
        ),
    ];
    for (query, t, want) in cases {
        let got = instant_value(query, t * 1000, &store);
        let ok = match (got, want) {
            (Some(g), Some(w)) => close(g, w),
            (None, None) => true,
            _ => false,
        };
        assert!(ok, "{query} at {t}s: got {got:?}, want {want:?}");
    }
}

#[test]
fn extension_functions_drop_the_metric_name_and_keep_other_labels() {
    let store = vec![
        series(&[("__name__", "m"), ("job", "a")], &[Some(1.0), Some(2.0)]),
        series(&[("__name__", "m"), ("job", "b")], &[Some(1.0), Some(1.0)]),
    ];
    let Answer::Vector(v) = run("distinct_over_time(m[1m])", Range::instant(10_000), &store, 1000).unwrap()
    else {
        panic!("not a vector")
    };
    let got: Vec<(String, f64)> = v.iter().map(|(l, v)| (l.display(), *v)).collect();
    assert_eq!(
        got,
        vec![("{job=\"a\"}".to_owned(), 2.0), ("{job=\"b\"}".to_owned(), 1.0)]
    );
}

#[test]
fn range_evaluation_agrees_with_instant_evaluation_at_every_step() {
    let values: Vec<Option<f64>> = (0..60).map(|i| Some(f64::from((i * 7) % 11))).collect();
    let store = vec![
        series(&[("__name__", "m"), ("job", "a")], &values),
        series(&[("__name__", "m"), ("job", "b")], &values[10..]),
    ];
    let queries = [
        "entropy_over_time(m[1m])",
        "sum(rate(m[1m]))",
        "m > 5",
        "quantile_over_time(0.9, m[2m]) - on(job) m",
        "count(max_over_time(m[30s:10s]))",
    ];
    let range = Range {
        start_ms: 0,
        end_ms: 590_000,
        step_ms: 30_000,
    };
    for query in queries {
        let Answer::Matrix(matrix) = run(query, range, &store, 1_000_000).unwrap() else {
            panic!("{query}: not a matrix")
        };
        for ts in range.steps() {
            let Answer::Vector(at) = run(query, Range::instant(ts), &store, 1_000_000).unwrap() else {
                panic!("{query}: not a vector")
            };
            for (labels, v) in &at {
                let series = matrix.iter().find(|s| &s.labels == labels).unwrap();
                let p = series.points.iter().find(|p| p.t == ts).unwrap();
                assert!(close(p.v, *v), "{query} at {ts}: range {} vs instant {v}", p.v);
            }
            let in_range = matrix
                .iter()
                .filter(|s| s.points.iter().any(|p| p.t == ts))
                .count();
            assert_eq!(in_range, at.len(), "{query} at {ts}");
        }
    }
}

#[test]
fn limits_stop_evaluation_with_prometheus_errors() {
    let values: Vec<Option<f64>> = (0..100).map(|i| Some(f64::from(i))).collect();
    let store: Vec<Series> = (0..10)
        .map(|i| series(&[("__name__", "m"), ("i", &i.to_string())], &values))
        .collect();
    // As in Prometheus, a range function holds one series' window at a time (100 here)
    // plus the results so far.
    assert!(
        run(
            "sum(count_over_time(m[1000s]))",
            Range::instant(990_000),
            &store,
            110
        )
        .is_ok()
    );
    let err = run(
        "sum(count_over_time(m[1000s]))",
        Range::instant(990_000),
        &store,
        99,
    )
    .unwrap_err();
    assert_eq!(err, EvalError::TooManySamples);
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );

    let expr = promql::parse("sum(m)").unwrap();
    let range = Range {
        start_ms: 0,
        end_ms: 990_000,
        step_ms: 10_000,
    };
    let data = data_for(&expr, &range, &store);
    let limits = Limits {
        max_samples: 1_000_000,
        lookback_ms: LOOKBACK_MS,
    };
    let past = Interrupt {
        deadline: Instant::now(),
        cancelled: Arc::new(AtomicBool::new(false)),
    };
    assert_eq!(
        evaluate(&expr, range, &data, &limits, &past),
        Err(EvalError::Timeout)
    );
    let cancelled = Interrupt {
        deadline: Instant::now() + Duration::from_secs(60),
        cancelled: Arc::new(AtomicBool::new(true)),
    };
    assert_eq!(
        evaluate(&expr, range, &data, &limits, &cancelled),
        Err(EvalError::Canceled)
    );
}

#[test]
fn plan_reads_exactly_the_ranges_prometheus_reads() {
    // (query, range start, end, step in s) → (start, end) of the one selector, in s.
    let cases: Vec<(&str, i64, i64, i64, i64, i64)> = vec![
        ("m", 1000, 2000, 10, 700, 2000),
        ("rate(m[1m])", 1000, 2000, 10, 940, 2000),
        ("m offset 1m", 1000, 2000, 10, 640, 1940),
        ("m @ 500", 1000, 2000, 10, 200, 500),
        ("rate(m[1m] @ 500 offset 10s)", 1000, 2000, 10, 430, 490),
        ("max_over_time(m[5m:1m])", 1000, 2000, 10, 400, 2000),
        (
            "max_over_time(rate(m[1m])[5m:1m] offset 1m)",
            1000,
            2000,
            10,
            580,
            1940,
        ),
        ("max_over_time(m[5m:1m] @ 100)", 1000, 2000, 10, -500, 100),
    ];
    for (query, start, end, step, want_start, want_end) in cases {
        let expr = promql::parse(query).unwrap();
        let range = Range {
            start_ms: start * 1000,
            end_ms: end * 1000,
            step_ms: step * 1000,
        };
        let needs = plan::needs(&expr, &range, LOOKBACK_MS);
        assert_eq!(needs.len(), 1, "{query}");
        assert_eq!(
            (needs[0].start_ms, needs[0].end_ms),
            (want_start * 1000, want_end * 1000),
            "{query}"
        );
    }
}
