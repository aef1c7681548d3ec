//! Queries answered from sketches fed by remote write (issue 7, first part): the answer
//! says so (`X-Answered-By`, a warning with the bound), stays within the bound of the
//! exact answer (`sketch=off`), and falls back to the exact path where sketches do not
//! cover the windows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Answer, TestProxy, send_with};

const RULES: &str = "  rules:\n    - match: 'served_values{job=\"ingest-test\"}'\n      functions: [quantile_over_time, distinct_over_time, entropy_over_time, l2_over_time]\n      retain: 3h\n";

/// Two hours of `served_values` (3 series, one sample every 10 s), written through the
/// proxy in time order, and delivered to Prometheus.
fn setup() -> (Prometheus, TestProxy, tempfile::TempDir, i64, i64) {
    setup_with(RULES)
}

/// [`setup`] with `sketches` as the `sketches:` section.
fn setup_with(sketches: &str) -> (Prometheus, TestProxy, tempfile::TempDir, i64, i64) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n{sketches}",
        dir.path().display()
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    let start = (write::now_ms() - 7_200_000) / 1000 * 1000;
    let data = write::generate("served_values", 3, 720, start, 10_000, 21);
    for part in 0..4 {
        let batch: Stored = data
            .iter()
            .map(|(k, v)| (k.clone(), v[part * 180..(part + 1) * 180].to_vec()))
            .collect();
        assert_eq!(write::post(&proxy.url(), &batch).status, 204);
    }
    let end = start + 719 * 10_000;
    wait_until(Duration::from_secs(60), "the samples to reach Prometheus", || {
        write::samples(&write::stored(&prometheus.url(), "served_values", end, "3h")) == 3 * 720
    })
    .unwrap();
    support::wait_delivered(&proxy);
    // Sketches serve once their rule's backfill (which reads what was written, too)
    // is done.
    wait_until(Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    (prometheus, proxy, dir, start, end)
}

/// A `query_range` through the proxy from `from_ms` to `to_ms`.
fn range_query(proxy: &TestProxy, query: &str, from_ms: i64, to_ms: i64, step: u32, extra: &str) -> Answer {
    range_query_with(proxy, query, from_ms, to_ms, step, extra, &[])
}

fn range_query_with(
    proxy: &TestProxy,
    query: &str,
    from_ms: i64,
    to_ms: i64,
    step: u32,
    extra: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let params = format!(
        "query={q}&start={}&end={}&step={step}{extra}",
        from_ms as f64 / 1000.0,
        to_ms as f64 / 1000.0
    );
    send_with(&proxy.url(), "GET", "/api/v1/query_range", &params, "", headers)
}

fn warnings(answer: &Answer) -> Vec<String> {
    answer.json()["warnings"]
        .as_array()
        .map(|w| w.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn range_functions_are_answered_from_sketches_within_their_bound() {
    let (prometheus, proxy, _dir, start, end) = setup();
    let functions = [
        (
            "quantile_over_time(0.9, served_values[30m])",
            "quantile_over_time",
        ),
        ("distinct_over_time(served_values[30m])", "distinct_over_time"),
        ("entropy_over_time(served_values[30m])", "entropy_over_time"),
        ("sum by (job) (l2_over_time(served_values[1h]))", "l2_over_time"),
    ];
    for (query, function) in functions {
        // Windows start at the first sample and end at the last: covered.
        let reads = prometheus.requests_served("/api/v1/read").unwrap();
        let sketched = range_query(&proxy, query, start + 3_600_000, end, 60, "");
        assert_eq!(
            prometheus.requests_served("/api/v1/read").unwrap(),
            reads,
            "{query}: no raw data is read when sketches cover every series"
        );
        assert_eq!(sketched.status, 200, "{query}: {}", sketched.body);
        assert_eq!(sketched.path.as_deref(), Some("sketch"), "{query}");
        let warned = warnings(&sketched);
        assert_eq!(warned.len(), 1, "{query}: {warned:?}");
        assert!(
            warned[0].starts_with(&format!("{function} answered from sketches")),
            "{warned:?}"
        );
        let exact = range_query(&proxy, query, start + 3_600_000, end, 60, "&sketch=off");
        if exact.path.as_deref() == Some("engine") {
            assert!(
                prometheus.requests_served("/api/v1/read").unwrap() > reads,
                "{query}: the exact path reads raw data (the check above can fail)"
            );
        }
        assert_ne!(exact.path.as_deref(), Some("sketch"), "{query}: sketch=off");
        assert!(warnings(&exact).is_empty());
        let (got, want) = (sketched.range_values(), exact.range_values());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{query}"
        );
        // The plugins claim 1% (quantile) and 2% (frequency functions); check the claim.
        let bound = if function == "quantile_over_time" {
            0.01
        } else {
            0.02
        };
        for (key, w) in &want {
            let g = got[key];
            assert!(
                (g - w).abs() <= bound * w.abs() + 1e-9,
                "{query} {key:?}: {g} vs exact {w}"
            );
        }
    }
}

#[test]
fn instant_queries_are_answered_from_sketches_within_their_bound() {
    let (_prometheus, proxy, _dir, _start, end) = setup();
    let cases = [
        ("quantile_over_time(0.99, served_values[1h])", 0.01),
        ("distinct_over_time(served_values[1h])", 0.02),
        ("entropy_over_time(served_values[90m])", 0.02),
        ("l2_over_time(served_values[1h])", 0.02),
    ];
    for (query, bound) in cases {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let params = format!("query={q}&time={}", end as f64 / 1000.0);
        let sketched = send_with(&proxy.url(), "GET", "/api/v1/query", &params, "", &[]);
        let exact = send_with(
            &proxy.url(),
            "POST",
            "/api/v1/query",
            "",
            &format!("{params}&sketch=off"),
            &[],
        );
        assert_eq!(
            sketched.path.as_deref(),
            Some("sketch"),
            "{query}: {}",
            sketched.body
        );
        assert_eq!(warnings(&sketched).len(), 1, "{query}");
        assert_ne!(exact.path.as_deref(), Some("sketch"), "{query}");
        let value = |answer: &Answer| -> BTreeMap<String, f64> {
            let json = answer.json();
            assert_eq!(json["data"]["resultType"], "vector", "{query}");
            json["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["metric"].to_string(),
                        s["value"][1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        };
        let (got, want) = (value(&sketched), value(&exact));
        assert_eq!(got.len(), 3, "{query}");
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (key, w) in &want {
            assert!(
                (got[key] - w).abs() <= bound * w.abs() + 1e-9,
                "{query} {key}: {} vs exact {w}",
                got[key]
            );
        }
    }
}

#[test]
fn windows_before_the_sketches_start_are_answered_exactly() {
    let (_prometheus, proxy, _dir, start, end) = setup();
    // The first windows reach back before the first sample.
    let query = "quantile_over_time(0.5, served_values[1h])";
    let answer = range_query(&proxy, query, start + 600_000, end, 300, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.path.as_deref(), Some("engine"));
    assert!(warnings(&answer).is_empty());
    // A short window is left to the exact path by the cost rule.
    let query = "distinct_over_time(served_values[5m])";
    let answer = range_query(&proxy, query, start + 3_600_000, end, 300, "");
    assert_eq!(answer.path.as_deref(), Some("engine"));
    let json: Value = answer.json();
    assert!(json.get("warnings").is_none());
}

#[test]
fn rule_queries_get_the_sketches_they_need() {
    // No selector written twice: the rule query names what to sketch.
    let queries = "  queries:\n    - 'sum by (job) (quantile_over_time(0.9, served_values{job=\"ingest-test\"}[30m]))'\n";
    let (_prometheus, proxy, _dir, start, end) = setup_with(queries);
    let query = "sum by (job) (quantile_over_time(0.9, served_values{job=\"ingest-test\"}[30m]))";
    let answer = range_query(&proxy, query, start + 3_600_000, end, 60, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.path.as_deref(), Some("sketch"));
    // Functions the query does not use get no sketches.
    let other = range_query(
        &proxy,
        "distinct_over_time(served_values[30m])",
        start + 3_600_000,
        end,
        60,
        "",
    );
    assert_eq!(other.path.as_deref(), Some("engine"));
}

#[test]
fn a_sketch_served_panel_refreshed_a_step_later_computes_only_its_new_steps() {
    let queries = "  queries:\n    - 'quantile_over_time(0.9, served_values[30m])'\n";
    let (_prometheus, proxy, _dir, start, end) = setup_with(queries);
    let query = "quantile_over_time(0.9, served_values[30m])";
    // Steps older than cache.max_freshness are kept; these all are.
    let (from, to) = (start + 3_600_000, end - 300_000);
    let ask = |from: i64, to: i64, headers: &[(&str, &str)]| {
        let answer = range_query_with(&proxy, query, from, to, 60, "", headers);
        assert_eq!(answer.status, 200, "{}", answer.body);
        let status = send_with(&proxy.url(), "GET", "/api/v1/status/sketches", "", "", &[]);
        assert_eq!(
            answer.path.as_deref(),
            Some("sketch"),
            "{from}..{to} (data {start}..{end}): {}",
            status.body
        );
        answer
    };
    let first = ask(from, to, &[]);
    assert_eq!(first.cache.as_deref(), Some("miss"));
    let again = ask(from, to, &[]);
    assert_eq!(again.cache.as_deref(), Some("hit"));
    assert_eq!(again.body, first.body, "cached steps answer as computed ones");
    // The panel a step later: one new step computed, the rest kept.
    let moved = ask(from + 60_000, to + 60_000, &[]);
    assert_eq!(moved.cache.as_deref(), Some("partial"));
    let recomputed = ask(from + 60_000, to + 60_000, &[("Cache-Control", "no-cache")]);
    assert_eq!(
        recomputed.cache.as_deref(),
        Some("miss"),
        "no-cache reads nothing cached"
    );
    assert_eq!(moved.body, recomputed.body);
    let steps = (to - from) / 60_000 + 1;
    // The sketches took every sample written while their backfill ran (the writes are
    // backdated, as from a sender catching up): the 30-minute windows hold under 1,000
    // samples, so the plugin answers exactly, and every step equals the exact path's.
    let exact = range_query_with(&proxy, query, from, to, 60, "&sketch=off", &[]);
    let (got, want) = (first.range_values(), exact.range_values());
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (key, w) in &want {
        assert!(
            (got[key] - w).abs() <= 1e-9 * w.abs(),
            "{key:?}: {} vs exact {w}",
            got[key]
        );
    }
    assert_eq!(moved.range_values().len() as i64, 3 * steps);
    // Any query is cached, rule query or not.
    let other = || {
        range_query_with(
            &proxy,
            "quantile_over_time(0.5, served_values[30m])",
            from,
            to,
            60,
            "",
            &[],
        )
    };
    let (first_other, other_again) = (other(), other());
    assert_eq!(first_other.path.as_deref(), Some("sketch"));
    assert_eq!(first_other.cache.as_deref(), Some("miss"));
    assert_eq!(other_again.cache.as_deref(), Some("hit"));
    assert_eq!(other_again.body, first_other.body);
}

/// Requests Prometheus received on `/api/v1/series`.
fn series_requests(prometheus: &Prometheus) -> f64 {
    let metrics = send_with(&prometheus.url(), "GET", "/metrics", "", "", &[]).body;
    metrics
        .lines()
        .find(|l| l.starts_with("prometheus_http_requests_total{code=\"200\",handler=\"/api/v1/series\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// With `complete: true`, which series exist comes from the sketches: no
/// `/api/v1/series` request goes downstream, and a series written to Prometheus
/// directly is not in the answer (as documented). Without it, downstream is asked and
/// that series is answered exactly.
#[test]
fn a_complete_rule_lists_series_from_the_sketches() {
    for complete in [true, false] {
        let rules = format!("{RULES}      complete: {complete}\n");
        let (prometheus, proxy, _dir, start, end) = setup_with(&rules);
        // A fourth series, behind the proxy's back.
        let outsider = write::generate("served_values", 4, 720, start, 10_000, 21);
        // Its last 50 minutes: Prometheus takes nothing older than an hour behind its newest.
        let outsider: Stored = outsider
            .into_iter()
            .filter(|(k, _)| k[1].1 == "host-3")
            .map(|(k, v)| (k, v.into_iter().filter(|(t, _)| *t > end - 3_000_000).collect()))
            .collect();
        assert_eq!(write::post(&prometheus.url(), &outsider).status, 204);
        let before = series_requests(&prometheus);
        let answer = range_query_with(
            &proxy,
            "quantile_over_time(0.9, served_values{job=\"ingest-test\"}[30m])",
            start + 3_600_000,
            end,
            60,
            "",
            &[("Cache-Control", "no-cache, no-store")],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        let series = answer.json()["data"]["result"].as_array().unwrap().len();
        let asked = series_requests(&prometheus) - before;
        if complete {
            assert_eq!(answer.path.as_deref(), Some("sketch"));
            assert_eq!((series, asked), (3, 0.0), "listed from the sketches");
        } else {
            assert_eq!(
                answer.path.as_deref(),
                Some("sketch,engine"),
                "the outsider is computed"
            );
            assert_eq!(series, 4);
            assert!(asked >= 1.0, "downstream lists the series");
        }
    }
}

/// Calls the proxy made into plugins named `call`, from its `/metrics`.
fn plugin_calls(proxy: &TestProxy, call: &str) -> f64 {
    let metrics = send_with(&proxy.url(), "GET", "/metrics", "", "", &[]).body;
    metrics
        .lines()
        .filter(|l| l.starts_with("sketch_proxy_plugin_call_duration_seconds_count{"))
        .filter(|l| l.contains(&format!("call=\"{call}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A sketch's coverage is asked of its plugin once per insert, not per query: a query
/// asked again with no sample written between asks for none.
#[test]
fn coverage_is_asked_once_between_inserts() {
    let (_prometheus, proxy, _dir, _start, end) = setup();
    let q: String = form_urlencoded::byte_serialize(b"quantile_over_time(0.99, served_values[1h])").collect();
    let params = format!("query={q}&time={}", end as f64 / 1000.0);
    let ask = || {
        let answer = send_with(
            &proxy.url(),
            "GET",
            "/api/v1/query",
            &params,
            "",
            &[("Cache-Control", "no-cache, no-store")],
        );
        assert_eq!(answer.path.as_deref(), Some("sketch"), "{}", answer.body);
        answer.body
    };
    let first = ask();
    let (coverage, queries) = (
        plugin_calls(&proxy, "coverage"),
        plugin_calls(&proxy, "query_range"),
    );
    assert_eq!(ask(), first);
    assert_eq!(
        plugin_calls(&proxy, "coverage"),
        coverage,
        "no coverage asked again"
    );
    assert_eq!(
        plugin_calls(&proxy, "query_range"),
        queries + 3.0,
        "one query per series"
    );
}
