//! Backfill (issue 7): a new sketch rule's sketches are filled from downstream's history
//! before they serve, and remote-written samples arriving meanwhile are neither lost
//! nor counted twice at the seam.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use sketch_proxy::prompb::Label;
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Answer, TestProxy, send};

const METRIC: &str = "seam_values";
const SERIES: usize = 3;
const STEP_MS: i64 = 10_000;
/// Samples downstream holds before the proxy sees any.
const HISTORY: usize = 360;
/// Samples written through the proxy afterwards, in batches of [`BATCH`].
const LIVE: usize = 54;
const BATCH: usize = 6;
/// The last sample of the history, sent again with the first live batch (as a sender
/// retrying would): it must not count twice. (Prometheus takes a resent sample only
/// when it is its series' newest; an older one fails the whole request.)
const RESENT: usize = 1;

fn rules_yaml(queue: &Path, with_rule: bool) -> String {
    let rules = if with_rule {
        format!(
            "sketches:\n  rules:\n    - match: '{METRIC}'\n      functions: [distinct_over_time, l2_over_time]\n      retain: 2h\n"
        )
    } else {
        String::new()
    };
    format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\n{rules}",
        queue.display()
    )
}

/// Every sample value is different, so `distinct_over_time` counts samples and
/// `l2_over_time` (the square root of the sum of squared value counts) grows with
/// any sample counted twice.
fn data(start_ms: i64) -> Stored {
    (0..SERIES)
        .map(|i| {
            let labels = vec![
                ("__name__".to_owned(), METRIC.to_owned()),
                ("instance".to_owned(), format!("host-{i}")),
            ];
            let points = (0..HISTORY + LIVE)
                .map(|j| (start_ms + j as i64 * STEP_MS, (i * 100_000 + j) as f64))
                .collect();
            (labels, points)
        })
        .collect()
}

/// The live batches: the first also carries the last [`RESENT`] history samples.
fn live_batches(all: &Stored) -> Vec<Stored> {
    (0..LIVE / BATCH)
        .map(|b| {
            let from = HISTORY + b * BATCH;
            let from = if b == 0 { from - RESENT } else { from };
            write::part(all, from, HISTORY + (b + 1) * BATCH)
        })
        .collect()
}

/// A Prometheus holding the history (written straight to it: the proxy never sees
/// it), the data's start, and all the data.
fn prometheus_with_history() -> (Prometheus, i64, Stored) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let start_ms = (write::now_ms() - 75 * 60_000) / STEP_MS * STEP_MS;
    let all = data(start_ms);
    assert_eq!(
        write::post(&prometheus.url(), &write::part(&all, 0, HISTORY)).status,
        204
    );
    (prometheus, start_ms, all)
}

fn status(proxy: &TestProxy) -> Value {
    let answer = send(&proxy.url(), "GET", "/api/v1/status/sketches", "", "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["status"], "success");
    json["data"].clone()
}

fn backfill_state(proxy: &TestProxy) -> String {
    status(proxy)["rules"][0]["backfill"]["state"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

fn range(proxy: &TestProxy, query: &str, from_ms: i64, to_ms: i64, extra: &str) -> Answer {
    support::range_query(&proxy.url(), query, (from_ms, to_ms, STEP_MS), extra)
}

/// Waits until Prometheus holds every sample once and the sketches reach the last
/// one, then checks every 10-minute window from the first whole one to the last
/// sample, each 10 s: answered from sketches, and equal to the exact answer (windows of
/// 61 samples are answered exactly by the plugins, so any sample missing or counted
/// twice shows).
fn check_seam(prometheus: &Prometheus, proxy: &TestProxy, all: &Stored, start_ms: i64) {
    let last_ms = start_ms + (HISTORY + LIVE - 1) as i64 * STEP_MS;
    wait_until(
        Duration::from_secs(60),
        "every sample to reach Prometheus once",
        || write::samples(&write::stored(&prometheus.url(), METRIC, last_ms, "3h")) == write::samples(all),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the sketches to reach the last sample",
        || status(proxy)["rules"][0]["coverage"]["to"].as_f64() == Some(last_ms as f64 / 1000.0),
    )
    .unwrap();
    let from_ms = start_ms + 600_000;
    for query in [
        format!("distinct_over_time({METRIC}[10m])"),
        format!("l2_over_time({METRIC}[10m])"),
    ] {
        let sketched = range(proxy, &query, from_ms, last_ms, "");
        assert_eq!(sketched.status, 200, "{query}: {}", sketched.body);
        assert_eq!(sketched.path.as_deref(), Some("sketch"), "{query}");
        let warning = &sketched.json()["warnings"][0];
        assert!(
            warning
                .as_str()
                .unwrap()
                .ends_with(": exact (every window small enough to keep whole)"),
            "{query}: {warning}"
        );
        let exact = range(proxy, &query, from_ms, last_ms, "&sketch=off");
        assert_eq!(exact.path.as_deref(), Some("engine"), "{query}");
        let (got, want) = (sketched.range_values(), exact.range_values());
        assert_eq!(got.len(), SERIES * (HISTORY + LIVE - 60), "{query}");
        assert_eq!(got.len(), want.len(), "{query}");
        for (key, w) in &want {
            let g = got[key];
            assert!(
                (g - w).abs() <= 1e-9 * w.abs(),
                "{query} {key:?}: sketch {g}, exact {w}"
            );
        }
    }
}

#[test]
fn a_rule_added_by_reload_is_backfilled_without_gap_or_double_count_at_the_seam() {
    let (prometheus, start_ms, all) = prometheus_with_history();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sketch-proxy.yml");
    std::fs::write(&file, rules_yaml(&dir.path().join("queue"), false)).unwrap();
    let proxy = TestProxy::start_file(&file, &prometheus.url());
    let batches = live_batches(&all);
    // Before the rule: forwarded only (maybe still queued when the rule appears).
    for batch in &batches[..3] {
        assert_eq!(write::post(&proxy.url(), batch).status, 204);
    }
    std::fs::write(&file, rules_yaml(&dir.path().join("queue"), true)).unwrap();
    proxy.proxy.reload().unwrap();
    // While the backfill runs (it waits for the queue first): buffered.
    for batch in &batches[3..6] {
        assert_eq!(write::post(&proxy.url(), batch).status, 204);
    }
    wait_until(Duration::from_secs(60), "the backfill to end", || {
        backfill_state(&proxy) == "done"
    })
    .unwrap();
    // After it: straight into the sketches.
    for batch in &batches[6..] {
        assert_eq!(write::post(&proxy.url(), batch).status, 204);
    }
    check_seam(&prometheus, &proxy, &all, start_ms);

    let rule = &status(&proxy)["rules"][0];
    assert_eq!(rule["series"], SERIES);
    assert_eq!(rule["origin"], "config");
    assert_eq!(rule["backfill"]["progress"], 1.0);
    let read_back = rule["backfill"]["samples"].as_u64().unwrap();
    assert!(read_back >= (SERIES * HISTORY) as u64, "{rule}");
    let metrics = send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(
        metrics.contains(&format!("sketch_proxy_sketch_backfill_samples_total {read_back}")),
        "{metrics}"
    );
}

#[test]
fn sketches_wait_for_a_backfill_that_waits_for_downstream() {
    let (mut prometheus, start_ms, all) = prometheus_with_history();
    prometheus.stop();

    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(&rules_yaml(&dir.path().join("queue"), true), &prometheus.url());
    let batches = live_batches(&all);
    for batch in &batches[..4] {
        assert_eq!(
            write::post(&proxy.url(), batch).status,
            204,
            "queued while downstream is down"
        );
    }
    wait_until(Duration::from_secs(30), "a failed backfill read", || {
        status(&proxy)["rules"][0]["backfill"]["failures"].as_u64() >= Some(1)
    })
    .unwrap();
    let rule = &status(&proxy)["rules"][0];
    assert_eq!(rule["backfill"]["state"], "running", "{rule}");
    assert!(rule["backfill"]["lastError"].is_string(), "{rule}");
    assert!(
        rule["coverage"].is_null(),
        "a backfilling sketch covers nothing: {rule}"
    );
    let labels: Vec<Label> = all
        .keys()
        .next()
        .unwrap()
        .iter()
        .map(|(name, value)| Label {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    let sketch = proxy.proxy.sketches.get(&labels, "distinct_over_time").unwrap();
    assert!(
        sketch.backfilling(),
        "created by remote write, waiting for its backfill"
    );
    assert!(sketch.serving(|_| ()).is_none(), "and not serving");

    prometheus.restart().unwrap();
    for batch in &batches[4..] {
        assert_eq!(write::post(&proxy.url(), batch).status, 204);
    }
    wait_until(Duration::from_secs(120), "the backfill to end", || {
        backfill_state(&proxy) == "done"
    })
    .unwrap();
    check_seam(&prometheus, &proxy, &all, start_ms);
}

/// A sender resending old samples throughout the backfill: reads find samples buffered
/// for spans already read, so the job reads again, as often as it may, and its
/// sketches then serve what its last read found, whole (not sketches started again
/// with nothing read into them). How many reads happen depends on the machine's pace;
/// `backfill::tests` forces every one.
#[test]
fn a_backfill_under_endless_resends_serves_whole_sketches() {
    let (prometheus, start_ms, all) = prometheus_with_history();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(&rules_yaml(&dir.path().join("queue"), true), &prometheus.url());
    // The first ten minutes of history, again and again, until the job ends.
    let resent = write::part(&all, 0, 60);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                assert_eq!(write::post(&proxy.url(), &resent).status, 204);
            }
        });
        let ended = wait_until(Duration::from_secs(120), "the backfill to end", || {
            backfill_state(&proxy) == "done"
        });
        done.store(true, Ordering::SeqCst);
        ended.unwrap();
    });
    for batch in &live_batches(&all) {
        assert_eq!(write::post(&proxy.url(), batch).status, 204);
    }
    check_seam(&prometheus, &proxy, &all, start_ms);
}
