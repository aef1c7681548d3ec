//! Sketches fed by remote write: the same answers as sketches fed directly, rules that
//! select series, and the series limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use sketch_proxy::plugin_host::SketchConfig;
use sketch_proxy::prompb::{Label, series_hash};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::TestProxy;
use support::write::{self, Stored};

const FUNCTIONS: [(&str, &[f64]); 5] = [
    ("quantile_over_time", &[0.5]),
    ("quantile_over_time", &[0.99]),
    ("distinct_over_time", &[]),
    ("entropy_over_time", &[]),
    ("l2_over_time", &[]),
];

fn start(sketches: &str) -> (Prometheus, TestProxy, tempfile::TempDir) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n{sketches}",
        dir.path().display()
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    (prometheus, proxy, dir)
}

fn labels(key: &[(String, String)]) -> Vec<Label> {
    key.iter()
        .map(|(name, value)| Label {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

fn metric(name: &str) -> String {
    format!("sketch_proxy_{name}")
}

#[test]
fn sketches_fed_by_ingest_answer_like_sketches_fed_directly() {
    let rules = "  rules:\n    - match: 'ingest_sketched{job=\"ingest-test\"}'\n      functions: [quantile_over_time, distinct_over_time, entropy_over_time, l2_over_time]\n      retain: 2h\n";
    let (_prometheus, proxy, _dir) = start(rules);
    let start_ms = write::now_ms() - 3_000_000;
    let data = write::generate("ingest_sketched", 3, 2000, start_ms, 1000, 11);
    // Four requests of 500 samples per series, as a sender would batch them.
    for part in 0..4 {
        let batch: Stored = data
            .iter()
            .map(|(k, v)| (k.clone(), v[part * 500..(part + 1) * 500].to_vec()))
            .collect();
        assert_eq!(write::post(&proxy.url(), &batch).status, 204);
    }
    let other = write::generate("ingest_unsketched", 1, 10, start_ms, 1000, 12);
    assert_eq!(write::post(&proxy.url(), &other).status, 204);
    // Samples that arrive while the rule's backfill runs are kept for after it: the
    // sketches hold them once it ended (under CI load it may still run here).
    sketch_proxy_testkit::wait_until(std::time::Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();

    let runtime = proxy.proxy.runtime();
    let end_ms = start_ms + 1999 * 1000;
    let windows = [
        (start_ms, end_ms),
        (start_ms + 123_456, start_ms + 1_500_500),
        (start_ms + 1_000_000, start_ms + 1_700_000),
        (end_ms - 50_000, end_ms),
    ];
    for (key, points) in &data {
        let series = labels(key);
        let (timestamps, values): (Vec<i64>, Vec<f64>) = points.iter().copied().unzip();
        for (function, args) in FUNCTIONS {
            let fed = proxy
                .proxy
                .sketches
                .get(&series, function)
                .expect("a sketch for every function");
            let direct = runtime
                .plugins
                .for_function(function)
                .unwrap()
                .create(
                    series_hash(&series),
                    &SketchConfig {
                        retention_ms: 7_200_000,
                        options: Vec::new(),
                    },
                )
                .unwrap();
            direct.insert(&timestamps, &values).unwrap();
            for (t0, t1) in windows {
                let fields = |e: sketch_proxy::plugin_host::Estimate| {
                    (e.value.to_bits(), e.bound.to_bits(), e.samples)
                };
                let from_ingest = fed
                    .with(|s| s.query(function, args, t0, t1).unwrap())
                    .unwrap()
                    .map(fields);
                let from_direct = direct.query(function, args, t0, t1).unwrap().map(fields);
                assert_eq!(from_ingest, from_direct, "{function}{args:?} over [{t0}, {t1}]");
                assert!(from_direct.is_some_and(|e| e.2 > 0));
            }
        }
    }
    let (key, _) = other.iter().next().unwrap();
    assert!(
        proxy
            .proxy
            .sketches
            .get(&labels(key), "quantile_over_time")
            .is_none(),
        "no rule selects it"
    );
    let metrics = support::send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(
        metrics.contains(&format!("{} 3\n", metric("sketch_series"))),
        "{metrics}"
    );
    assert!(
        // Once per sketch: the quantile one and the frequency one of each series.
        metrics.contains(&format!("{}_total {}\n", metric("sketch_samples"), 3 * 2000 * 2)),
        "{metrics}"
    );
}

#[test]
fn past_the_series_limit_new_series_get_no_sketches_and_ingest_carries_on() {
    let rules = "  max_series: 2\n  rules:\n    - match: '{__name__=~\"ingest_limited.*\"}'\n      functions: [l2_over_time]\n      retain: 1h\n";
    let (prometheus, proxy, _dir) = start(rules);
    let data = write::generate("ingest_limited", 5, 20, write::now_ms() - 600_000, 10_000, 3);
    assert_eq!(write::post(&proxy.url(), &data).status, 204);
    let sketched = data
        .keys()
        .filter(|k| proxy.proxy.sketches.get(&labels(k), "l2_over_time").is_some())
        .count();
    assert_eq!(sketched, 2);
    let metrics = support::send(&proxy.url(), "GET", "/metrics", "", "").body;
    let refused = format!(
        "{}_total{{reason=\"max_series\"}} 3\n",
        metric("sketch_series_refused")
    );
    assert!(metrics.contains(&refused), "{metrics}");
    let all_present =
        sketch_proxy_testkit::wait_until(std::time::Duration::from_secs(60), "forwarding", || {
            write::samples(&write::stored(
                &prometheus.url(),
                "ingest_limited",
                write::now_ms(),
                "1h",
            )) == write::samples(&data)
        });
    assert!(all_present.is_ok(), "every sample is forwarded, sketched or not");
}

#[test]
fn series_that_start_matching_after_a_reload_get_sketches_with_their_history() {
    // Backfilled: what downstream holds of b is read back (sketch_backfill.rs tests
    // the seam closely); without backfill, b is sketched from the reload on.
    for (backfill, b_from) in [(true, 0), (false, 60_000)] {
        reload_case(backfill, b_from);
    }
}

fn reload_case(backfill: bool, b_from: i64) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sketch-proxy.yml");
    let yaml = |selector: &str| {
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  rules:\n    - match: '{selector}'\n      functions: [distinct_over_time]\n      retain: 1h\n  backfill: {backfill}\n",
            dir.path().join("queue").display()
        )
    };
    std::fs::write(&file, yaml("ingest_reloaded_a")).unwrap();
    let proxy = TestProxy::start_file(&file, &prometheus.url());
    let t = write::now_ms() - 600_000;
    let a = write::generate("ingest_reloaded_a", 1, 10, t, 1000, 1);
    let b = write::generate("ingest_reloaded_b", 1, 10, t, 1000, 2);
    let send_both = |a: &Stored, b: &Stored| {
        assert_eq!(write::post(&proxy.url(), a).status, 204);
        assert_eq!(write::post(&proxy.url(), b).status, 204);
    };
    send_both(&a, &b);
    let key_b = labels(b.keys().next().unwrap());
    assert!(proxy.proxy.sketches.get(&key_b, "distinct_over_time").is_none());

    std::fs::write(&file, yaml("{__name__=~\"ingest_reloaded_.*\"}")).unwrap();
    proxy.proxy.reload().unwrap();
    let later = |data: &Stored| -> Stored {
        data.iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|&(ts, x)| (ts + 60_000, x)).collect()))
            .collect()
    };
    send_both(&later(&a), &later(&b));
    sketch_proxy_testkit::wait_until(std::time::Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    let coverage = |key: &[Label]| {
        proxy
            .proxy
            .sketches
            .get(key, "distinct_over_time")
            .and_then(|s| s.with(|s| s.coverage().unwrap()))
    };
    let key_a = labels(a.keys().next().unwrap());
    assert_eq!(
        coverage(&key_a).flatten(),
        Some((t, t + 69_000)),
        "a keeps its sketch and its history"
    );
    assert_eq!(
        coverage(&key_b).flatten(),
        Some((t + b_from, t + 69_000)),
        "b with backfill {backfill}"
    );
}

#[test]
fn a_plugin_instance_near_its_memory_cap_gets_no_new_sketches_and_keeps_serving() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "plugins:\n  instances: 1\n  memory_limit_bytes: 16777216\ningest:\n  enabled: true\n  queue_dir: {}\n\
         sketches:\n  rules:\n    - match: '{{__name__=~\"ingest_heavy.*\"}}'\n      functions: [quantile_over_time]\n      retain: 26h\n",
        dir.path().display()
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    let t = write::now_ms() - 3_000_000;
    // Write until the sketches hold past 3/4 of the 16 MiB instance (a few bytes a
    // sample: about a million and a half samples).
    let filled = || proxy.proxy.sketches.memory_bytes() >= (16 << 20) * 4 / 5;
    let mut written = 0;
    for part in 0..200 {
        if filled() {
            break;
        }
        written += 1;
        let data = write::generate("ingest_heavy", 44, 1000, t + part * 1000, 1, part as u64);
        let shifted: Stored = data
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.into_iter()
                        .enumerate()
                        .map(|(j, (_, x))| (t + (part * 1000 + j as i64) * 10, x))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(write::post(&proxy.url(), &shifted).status, 204);
    }
    assert!(filled(), "200,000 samples per series did not fill the instance");
    let late = write::generate("ingest_heavy_late", 3, 10, write::now_ms() - 1000, 1, 99);
    assert_eq!(write::post(&proxy.url(), &late).status, 204);
    let metrics = support::send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(
        metrics.contains(&format!(
            "{}_total{{reason=\"plugin_memory\"}} 3\n",
            metric("sketch_series_refused")
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sketch_proxy_plugin_quarantines_total{"),
        "{metrics}"
    );
    let (key, points) = write::generate("ingest_heavy", 44, 1000, t, 1, 0)
        .into_iter()
        .next()
        .unwrap();
    let estimate = proxy
        .proxy
        .sketches
        .get(&labels(&key), "quantile_over_time")
        .unwrap()
        .with(|s| s.query("quantile_over_time", &[0.5], t, write::now_ms()).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        estimate.samples,
        written * points.len() as u64,
        "the sketches already made keep serving"
    );
}
