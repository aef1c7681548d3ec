//! The results cache against a real Prometheus: answers joined from cached extents and
//! computed steps equal Prometheus' whole answers, whichever path computed them; fresh
//! steps, partial answers and what the client forbids are not kept; a late sample
//! written through the proxy drops what it changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::time::Duration;

use sketch_proxy_testkit::demo::{TEST_END, TEST_START};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{Answer, TestProxy, demo_prometheus, send_with};

fn range(base: &str, query: &str, window: (i64, i64, i64), headers: &[(&str, &str)]) -> Answer {
    let answer = support::range_query_with(base, query, window, "", headers);
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    answer
}

const QUERIES: [&str; 4] = [
    "sum by (code) (rate(demo_http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(demo_request_duration_seconds_bucket[10m])))",
    "demo_request_duration_seconds",
    "max_over_time(demo_request_duration_seconds[7m]) > 0.2",
];

/// Requests of one panel in order: (what, start and end moved by steps, outcome).
const MOVES: [(&str, (i64, i64), &str); 6] = [
    ("first", (0, 0), "miss"),
    ("again", (0, 0), "hit"),
    ("moved on", (7, 7), "partial"),
    ("back inside", (2, 3), "hit"),
    ("wider both sides", (-5, 12), "partial"),
    ("no-cache", (0, 0), "miss"),
];

/// Each query over odd start times and steps, moved as a refreshed panel moves:
/// every answer through the cache equals Prometheus' own, byte for byte, plain and
/// gzip-compressed; and the engine's equal its own uncached answers.
#[test]
fn joined_answers_equal_whole_answers() {
    let prometheus = demo_prometheus();
    let forwarding = TestProxy::start("", &prometheus.url());
    let local = TestProxy::start("query:\n  mode: local\n", &prometheus.url());
    let origin = (TEST_START + 1_800) * 1000 + 437;
    for (i, query) in QUERIES.iter().enumerate() {
        let step = [15_000, 60_000, 7_000, 90_000][i];
        let encoding: &[(&str, &str)] = if i % 2 == 0 {
            &[]
        } else {
            &[("Accept-Encoding", "gzip")]
        };
        for (path, proxy) in [("downstream", &forwarding), ("engine", &local)] {
            for (what, (a, b), outcome) in MOVES {
                let window = (origin + a * step, origin + 40 * step + b * step, step);
                let mut headers = encoding.to_vec();
                if what == "no-cache" {
                    headers.push(("Cache-Control", "no-cache"));
                }
                let got = range(&proxy.url(), query, window, &headers);
                let context = format!("{query} via {path}, {what}");
                assert_eq!(got.cache.as_deref(), Some(outcome), "{context}");
                assert_eq!(got.path.as_deref(), Some(path), "{context}");
                let want = match path {
                    "downstream" => range(&prometheus.url(), query, window, &[]),
                    _ => range(
                        &proxy.url(),
                        query,
                        window,
                        &[("Cache-Control", "no-cache, no-store")],
                    ),
                };
                assert_eq!(got.body, want.body, "{context}");
            }
        }
    }
    let metrics = send_with(&forwarding.url(), "GET", "/metrics", "", "", &[]).body;
    for line in [
        "sketch_proxy_results_cache_requests_total{result=\"hit\"} 8\n",
        "sketch_proxy_results_cache_requests_total{result=\"partial\"} 8\n",
        "sketch_proxy_results_cache_requests_total{result=\"miss\"} 8\n",
        "sketch_proxy_results_cache_entries 4\n",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// An instant query at a time past the freshness window is kept; one at "now" is not.
#[test]
fn instant_answers_are_kept_once_final() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let at = format!("&time={}", TEST_END - 600);
    let query = |extra: &str| {
        let params = format!("query=sum%20by%20(job)%20(rate(demo_http_requests_total%5B5m%5D)){extra}");
        (
            send_with(
                &proxy.url(),
                "GET",
                "/api/v1/query",
                &params,
                "",
                &[("Accept-Encoding", "gzip")],
            ),
            send_with(&prometheus.url(), "GET", "/api/v1/query", &params, "", &[]),
        )
    };
    for outcome in ["miss", "hit", "hit"] {
        let (got, want) = query(&at);
        assert_eq!(got.cache.as_deref(), Some(outcome));
        assert_eq!(got, want);
    }
    for _ in 0..2 {
        let (got, _) = query("");
        assert_eq!(got.cache.as_deref(), Some("miss"), "now is never kept");
    }
}

/// `Cache-Control: no-store` keeps nothing; `no-cache` reads nothing but keeps.
#[test]
fn client_directives_are_obeyed() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let window = (TEST_START * 1000 + 600_000, TEST_END * 1000 - 600_000, 30_000);
    let ask = |directive: &str| {
        let headers: &[(&str, &str)] = &[("Cache-Control", directive)];
        let headers = if directive.is_empty() { &[][..] } else { headers };
        range(&proxy.url(), QUERIES[0], window, headers).cache
    };
    let table = [
        ("no-store", "miss"),
        ("", "miss"),
        ("no-cache", "miss"),
        ("", "hit"),
    ];
    for (directive, outcome) in table {
        assert_eq!(ask(directive).as_deref(), Some(outcome), "{directive:?}");
    }
}

/// Over two endpoints with one down, the partial answer (a warning, `no-store`) is
/// not kept: the next request is computed again.
#[test]
fn partial_answers_are_not_kept() {
    let prometheus = demo_prometheus();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let config = format!(
        "downstream:\n  endpoints:\n    - url: {}\n    - url: {dead}\n",
        prometheus.url()
    );
    let proxy = TestProxy::start(&config, &prometheus.url());
    let window = (TEST_START * 1000 + 600_000, TEST_END * 1000 - 600_000, 30_000);
    for _ in 0..2 {
        let answer = range(&proxy.url(), QUERIES[0], window, &[]);
        assert!(answer.body.contains("partial response"), "{}", answer.body);
        assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
        assert_eq!(answer.cache.as_deref(), Some("miss"));
    }
}

fn series(job: &str, from_ms: i64, to_ms: i64) -> Stored {
    let labels = vec![
        ("__name__".to_owned(), "cache_test".to_owned()),
        ("job".to_owned(), job.to_owned()),
    ];
    let points = (from_ms..=to_ms)
        .step_by(15_000)
        .map(|t| (t, (t / 15_000 % 17) as f64))
        .collect();
    Stored::from([(labels, points)])
}

/// Steps in the freshness window are computed at every request; a sample written
/// through the proxy with a time inside cached steps drops them, and the next answer
/// has it.
#[test]
fn fresh_steps_and_late_samples() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\n  min_backoff: 20ms\n  max_backoff: 500ms\n  destinations:\n    - url: {}/api/v1/write\n",
        dir.path().display(),
        prometheus.url()
    );
    let proxy = TestProxy::start(&config, &prometheus.url());
    let step = 15_000;
    let end = write::now_ms() / step * step;
    let start = end - 20 * 60_000;
    // History written to Prometheus directly, as by a writer the proxy does not see.
    assert_eq!(
        write::post(&prometheus.url(), &series("a", start, end)).status,
        204
    );
    let count = |answer: &Answer| answer.json()["data"]["result"].as_array().unwrap().len();
    wait_until(Duration::from_secs(60), "the samples to reach Prometheus", || {
        count(&range(&prometheus.url(), "cache_test", (start, end, step), &[])) == 1
    })
    .unwrap();
    let query = "sum by (job) (count_over_time(cache_test[3m]))";
    let window = (start, end, step);
    assert_eq!(
        range(&proxy.url(), query, window, &[]).cache.as_deref(),
        Some("miss")
    );
    let again = range(&proxy.url(), query, window, &[]);
    assert_eq!(
        again.cache.as_deref(),
        Some("partial"),
        "the last minute is computed again"
    );
    assert_eq!(count(&again), 1);
    // A new series with samples ten minutes back, as a sender catching up.
    let late = series("b", end - 10 * 60_000, end - 9 * 60_000);
    assert_eq!(write::post(&proxy.url(), &late).status, 204);
    wait_until(
        Duration::from_secs(60),
        "the late samples to reach Prometheus",
        || count(&range(&prometheus.url(), "cache_test", (start, end, step), &[])) == 2,
    )
    .unwrap();
    let after = range(&proxy.url(), query, window, &[]);
    assert_eq!(
        after.cache.as_deref(),
        Some("miss"),
        "the late sample dropped the cached steps"
    );
    assert_eq!(count(&after), 2, "{}", after.body);
    assert_eq!(after.body, range(&prometheus.url(), query, window, &[]).body);
    // Computed after the late sample reached Prometheus, that answer was kept.
    let kept = range(&proxy.url(), query, window, &[]);
    assert_eq!(kept.cache.as_deref(), Some("partial"));
    assert_eq!(count(&kept), 2);
    let metrics = send_with(&proxy.url(), "GET", "/metrics", "", "", &[]).body;
    assert!(
        metrics.contains("sketch_proxy_results_cache_invalidations_total 1\n"),
        "{metrics}"
    );
}
