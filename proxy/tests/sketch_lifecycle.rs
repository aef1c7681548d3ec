//! When sketches go (issue 17): idle series lose theirs and make room under
//! `sketches.max_series`; a reload drops what its rules no longer want; sketches of a
//! quarantined plugin come back after a reload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod guest_support;
mod support;

use std::path::Path;
use std::time::Duration;

use sketch_proxy::plugin_host::SketchConfig;
use sketch_proxy::prompb::Label;
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{TestProxy, send};

const STEP_MS: i64 = 10_000;

/// One series `metric{instance="a"}` with `samples` samples ending at `end_ms`.
fn series(metric: &str, samples: usize, end_ms: i64) -> Stored {
    let labels = vec![
        ("__name__".to_owned(), metric.to_owned()),
        ("instance".to_owned(), "a".to_owned()),
    ];
    let points = (0..samples)
        .map(|j| (end_ms - (samples - 1 - j) as i64 * STEP_MS, j as f64))
        .collect();
    [(labels, points)].into_iter().collect()
}

fn labels(metric: &str) -> Vec<Label> {
    vec![
        Label {
            name: "__name__".into(),
            value: metric.into(),
        },
        Label {
            name: "instance".into(),
            value: "a".into(),
        },
    ]
}

fn config(dir: &Path, sketches: &str) -> String {
    format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n{sketches}",
        dir.join("queue").display()
    )
}

/// A counter or gauge of `/metrics`, 0 when absent.
fn metric(proxy: &TestProxy, name: &str) -> f64 {
    let body = send(&proxy.url(), "GET", "/metrics", "", "").body;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn idle_series_lose_their_sketches_and_make_room() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        dir.path(),
        "  max_series: 1\n  backfill: false\n  snapshot_interval: 1s\n  rules:\n    - match: '{__name__=~\"idle_.*\"}'\n      functions: [quantile_over_time]\n      retain: 2m\n",
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    let now = write::now_ms();
    // Its newest sample is 9 minutes old: past its 2-minute retention.
    assert_eq!(
        write::post(&proxy.url(), &series("idle_old", 30, now - 540_000)).status,
        204
    );
    assert_eq!(
        write::post(&proxy.url(), &series("idle_new", 30, now)).status,
        204
    );
    assert_eq!(
        metric(&proxy, "sketch_proxy_sketch_series_refused_total"),
        1.0,
        "max_series: the second series waits"
    );
    let store = &proxy.proxy.sketches;
    assert!(store.get(&labels("idle_old"), "quantile_over_time").is_some());
    wait_until(
        Duration::from_secs(30),
        "the idle series to lose its sketch",
        || store.series_count() == 0,
    )
    .unwrap();
    assert!(store.get(&labels("idle_old"), "quantile_over_time").is_none());
    assert_eq!(store.memory_bytes(), 0, "its memory is given back");
    assert_eq!(metric(&proxy, "sketch_proxy_sketch_dropped_total"), 1.0);

    let later = write::now_ms();
    assert_eq!(
        write::post(&proxy.url(), &series("idle_new", 3, later)).status,
        204
    );
    assert!(
        store.get(&labels("idle_new"), "quantile_over_time").is_some(),
        "the freed room takes the series refused before"
    );
    assert_eq!(store.series_count(), 1);
}

#[test]
fn a_reload_drops_the_sketches_its_rules_no_longer_want() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sketch-proxy.yml");
    let rules = |frequency: &str, with_quantile: bool| {
        let quantile = if with_quantile {
            "    - match: 'kept_q'\n      functions: [quantile_over_time]\n      retain: 1h\n"
        } else {
            ""
        };
        config(
            dir.path(),
            &format!(
                "  backfill: false\n  rules:\n{quantile}    - match: 'kept_f'\n      functions: [{frequency}]\n      retain: 1h\n"
            ),
        )
    };
    std::fs::write(&file, rules("distinct_over_time, entropy_over_time", true)).unwrap();
    let proxy = TestProxy::start_file(&file, &prometheus.url());
    let now = write::now_ms();
    for metric in ["kept_q", "kept_f"] {
        assert_eq!(write::post(&proxy.url(), &series(metric, 30, now)).status, 204);
    }
    let store = &proxy.proxy.sketches;
    assert_eq!(store.series_count(), 2);
    let before = store.memory_bytes();
    assert!(store.get(&labels("kept_f"), "entropy_over_time").is_some());

    std::fs::write(&file, rules("distinct_over_time", false)).unwrap();
    proxy.proxy.reload().unwrap();
    assert!(store.get(&labels("kept_q"), "quantile_over_time").is_none());
    assert_eq!(store.series_count(), 1);
    assert!(
        store.memory_bytes() < before,
        "{} vs {before}",
        store.memory_bytes()
    );
    assert!(
        store.get(&labels("kept_f"), "entropy_over_time").is_none(),
        "a function gone from a shared sketch"
    );
    let distinct = store.get(&labels("kept_f"), "distinct_over_time").unwrap();
    let answer = distinct
        .with(|s| s.query("distinct_over_time", &[], now - 3_600_000, now).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(answer.samples, 30, "the kept sketch keeps its samples");
    assert_eq!(metric(&proxy, "sketch_proxy_sketch_dropped_total"), 1.0);
}

#[test]
fn sketches_of_a_quarantined_plugin_come_back_after_a_reload() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(guest_support::guest_path("hostile"), plugins.join("hostile.wasm")).unwrap();
    let yaml = format!(
        "plugins:\n  dir: {}\n{}",
        plugins.display(),
        config(
            dir.path(),
            "  backfill: false\n  rules:\n    - match: 'hurt'\n      functions: [hostile_over_time]\n      retain: 1h\n",
        )
    );
    let file = dir.path().join("sketch-proxy.yml");
    std::fs::write(&file, yaml).unwrap();
    let proxy = TestProxy::start_file(&file, &prometheus.url());
    let now = write::now_ms();
    assert_eq!(
        write::post(&proxy.url(), &series("hurt", 5, now - 100_000)).status,
        204
    );
    let store = &proxy.proxy.sketches;
    let served = || {
        store
            .get(&labels("hurt"), "hostile_over_time")
            .and_then(|s| s.with(|h| !h.plugin().is_quarantined()))
            .unwrap_or(false)
    };
    assert!(served());

    // A sketch of the same plugin made to panic takes the whole plugin out.
    let hostile = proxy.proxy.runtime().plugins.by_name("hostile").unwrap().clone();
    let probe = hostile
        .create(
            7,
            &SketchConfig {
                retention_ms: 60_000,
                options: vec![("mode".into(), "panic".into())],
            },
        )
        .unwrap();
    assert!(probe.query("hostile_over_time", &[], 0, 1).is_err());
    assert!(hostile.is_quarantined());
    assert!(!served(), "the series' sketch went with its plugin");

    proxy.proxy.reload().unwrap();
    assert_eq!(write::post(&proxy.url(), &series("hurt", 5, now)).status, 204);
    assert!(served(), "the reloaded plugin sketches the series again");
    // In its default mode the plugin answers the number of samples it holds.
    let answer = store
        .get(&labels("hurt"), "hostile_over_time")
        .unwrap()
        .with(|s| s.query("hostile_over_time", &[], 0, now).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        answer.value, 5.0,
        "a new sketch, fed by the write after the reload"
    );
}
