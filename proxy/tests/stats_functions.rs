//! The stats plugin's functions answered from sketches against a real Prometheus 2.42
//! answering the same queries over the same samples (issue 22): series written through
//! the proxy with stale markers, NaN, an infinity and a counter reset among them. Count,
//! min, max, present, last, changes, resets and delta must be equal to the last digit
//! Prometheus prints, and so must increase and rate of the counter (its windows hold a
//! reset or two, fewer than the plugin lists); of the other series, which drop at
//! every other sample, within 1e-12 like sums; sums and
//! means within 1e-12 relative (their block sums are added in another order); variances
//! within the claimed 1e-9: of values a million times their spread, Prometheus' own
//! answer carries rounding of ε·(mean/spread)², about 1e-10 here, and so does ours.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Answer, TestProxy, send};

/// (function, relative tolerance: 0 is equal to the bit)
const FUNCTIONS: [(&str, f64); 14] = [
    ("avg_over_time", 1e-12),
    ("sum_over_time", 1e-12),
    ("count_over_time", 0.0),
    ("min_over_time", 0.0),
    ("max_over_time", 0.0),
    ("stddev_over_time", 1e-9),
    ("stdvar_over_time", 1e-9),
    ("present_over_time", 0.0),
    ("last_over_time", 0.0),
    ("changes", 0.0),
    ("resets", 0.0),
    ("delta", 0.0),
    ("increase", 1e-12),
    ("rate", 1e-12),
];

/// Three hours at a 10 s scrape of four series: lognormal-ish latencies, a counter that
/// resets, values around 1e6 with a small spread, and one with a NaN, a +Inf and a
/// stretch of stale markers (the series went away for ten minutes).
fn data(start: i64) -> Stored {
    let n = 1080;
    let stale = f64::from_bits(sketch_proxy::prompb::STALE_NAN_BITS);
    let series = |name: &str, f: &dyn Fn(usize) -> Option<f64>| {
        let labels = vec![
            ("__name__".to_owned(), "stats_m".to_owned()),
            ("kind".to_owned(), name.to_owned()),
        ];
        let points = (0..n)
            .filter_map(|i| f(i).map(|v| (start + i as i64 * 10_000, v)))
            .collect();
        (labels, points)
    };
    [
        series("latency", &|i| {
            Some(((i * 7919) % 1000) as f64 / 37.0 + (i % 13) as f64)
        }),
        series("counter", &|i| Some(((i % 400) * 3) as f64)),
        series("around-a-million", &|i| Some(1e6 + ((i * 31) % 17) as f64 * 0.25)),
        series("odd", &|i| match i {
            100 => Some(f64::NAN),
            700 => Some(f64::INFINITY),
            // A stale marker, then nothing for ten minutes.
            400 => Some(stale),
            401..460 => None,
            _ => Some((i % 50) as f64 - 25.0),
        }),
    ]
    .into_iter()
    .collect()
}

fn values(answer: &Answer) -> BTreeMap<(String, String), String> {
    let json = answer.json();
    assert_eq!(json["status"], "success", "{}", answer.body);
    let mut out = BTreeMap::new();
    for s in json["data"]["result"].as_array().unwrap() {
        for p in s["values"].as_array().unwrap() {
            out.insert(
                (s["metric"].to_string(), p[0].to_string()),
                p[1].as_str().unwrap().to_owned(),
            );
        }
    }
    out
}

fn number(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t.parse().unwrap(),
    }
}

#[test]
fn stats_functions_from_sketches_equal_prometheus() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let functions: Vec<&str> = FUNCTIONS.iter().map(|(f, _)| *f).collect();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  rules:\n    - match: stats_m\n      functions: [{}]\n      retain: 4h\n      complete: true\ncache:\n  enabled: false\n",
        dir.path().display(),
        functions.join(", ")
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    let start = (write::now_ms() - 3 * 3_600_000) / 60_000 * 60_000;
    let all = data(start);
    for part in 0..6 {
        let slice: Stored = all
            .iter()
            .map(|(k, v)| {
                let (from, to) = (start + part * 1_800_000, start + (part + 1) * 1_800_000);
                (
                    k.clone(),
                    v.iter().copied().filter(|(t, _)| *t >= from && *t < to).collect(),
                )
            })
            .collect();
        assert_eq!(write::post(&proxy.url(), &slice).status, 204);
    }
    let end = start + 1079 * 10_000;
    let points: usize = all.values().map(Vec::len).sum();
    wait_until(Duration::from_secs(60), "Prometheus to hold every sample", || {
        let q = "query=sum(count_over_time(stats_m[4h]))&time=".to_owned() + &(end / 1000).to_string();
        let answer = send(&prometheus.url(), "GET", "/api/v1/query", &q, "");
        // Stale markers are no samples to count_over_time.
        answer.json()["data"]["result"][0]["value"][1].as_str() == Some((points - 1).to_string().as_str())
    })
    .unwrap();
    // Sketches serve once their rule's backfill is done.
    wait_until(Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    // (window, step s): over the exact threshold, and many blocks; steps on the
    // samples' 10 s grid (a sample at each window's first millisecond) and off it.
    for (window, step) in [("1h", 120), ("2h", 300), ("30m", 60), ("45m", 37)] {
        for (function, tolerance) in FUNCTIONS {
            let query = format!("{function}(stats_m[{window}])");
            let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
            let params = format!(
                "query={q}&start={}&end={}&step={step}",
                end / 1000 - 3000,
                end / 1000
            );
            let sketched = send(&proxy.url(), "GET", "/api/v1/query_range", &params, "");
            let exact = send(&prometheus.url(), "GET", "/api/v1/query_range", &params, "");
            assert_eq!(
                sketched.path.as_deref(),
                Some("sketch"),
                "{query}: {}",
                sketched.body
            );
            let (got, want) = (values(&sketched), values(&exact));
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{query}"
            );
            for (key, w) in &want {
                let g = &got[key];
                // Only the counter's windows hold few enough resets for the plugin to
                // add the values before them in Prometheus' order.
                let counter = key.0.contains("\"counter\"") && matches!(function, "increase" | "rate");
                if tolerance == 0.0 || counter {
                    assert_eq!(g, w, "{query} at {key:?}");
                    continue;
                }
                let (g, w) = (number(g), number(w));
                let close = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tolerance * w.abs();
                assert!(close, "{query} at {key:?}: {g} against Prometheus' {w}");
            }
        }
    }
}
