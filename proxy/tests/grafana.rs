//! Grafana's Prometheus data source, replayed: the requests it makes on Save & test,
//! dashboard load, a panel query and the query editor's look-ups
//! (../shared/reference/test-material.md §3), each answered with success and JSON.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use support::{TestProxy, demo_prometheus, send};

/// (step, method, path, URL query, form body). Times as Grafana sends them: panel
/// ranges in float seconds aligned to the step, label look-ups in whole seconds,
/// the exemplar probe in milliseconds.
const SEQUENCE: &[(&str, &str, &str, &str, &str)] = &[
    (
        "save & test: health query",
        "POST",
        "/api/v1/query",
        "",
        "query=1%2B1&time=4",
    ),
    (
        "save & test: build info",
        "GET",
        "/api/v1/status/buildinfo",
        "",
        "",
    ),
    ("dashboard load: recording rules", "GET", "/api/v1/rules", "", ""),
    (
        "dashboard load: exemplar probe",
        "POST",
        "/api/v1/query_exemplars",
        "",
        "query=test&start=1700005400000&end=1700007200000",
    ),
    (
        "template variable label_names()",
        "POST",
        "/api/v1/labels",
        "",
        "start=1700000000&end=1700007200",
    ),
    (
        "template variable label_values(job)",
        "GET",
        "/api/v1/label/job/values",
        "start=1700000000&end=1700007200",
        "",
    ),
    (
        "template variable label_values(up, instance)",
        "GET",
        "/api/v1/label/instance/values",
        "match%5B%5D=up&start=1700000000&end=1700007200",
        "",
    ),
    (
        "template variable query_result",
        "POST",
        "/api/v1/query",
        "",
        "query=count(up)&time=1700007200",
    ),
    (
        "panel range query",
        "POST",
        "/api/v1/query_range",
        "",
        "query=sum+by+(instance)+(rate(demo_http_requests_total%5B1m0s%5D))&start=1700000000&end=1700007200&step=30",
    ),
    (
        "panel range query with timeout",
        "POST",
        "/api/v1/query_range",
        "",
        "query=quantile_over_time(0.99%2C+demo_request_duration_seconds%5B15m%5D)&start=1700000000&end=1700007200&step=60&timeout=60s",
    ),
    (
        "panel instant query",
        "POST",
        "/api/v1/query",
        "",
        "query=sum(up)&time=1700007199.999",
    ),
    (
        "panel exemplars",
        "POST",
        "/api/v1/query_exemplars",
        "",
        "query=sum(up)&start=1700000000&end=1700007200",
    ),
    (
        "annotation query",
        "POST",
        "/api/v1/query_range",
        "",
        "query=up&start=1700000000&end=1700007200&step=60",
    ),
    (
        "editor: metric names",
        "GET",
        "/api/v1/label/__name__/values",
        "start=1700006400&end=1700007200&limit=40000",
        "",
    ),
    ("editor: metadata", "GET", "/api/v1/metadata", "", ""),
    (
        "editor: labels for a metric",
        "POST",
        "/api/v1/labels",
        "",
        "match%5B%5D=demo_http_requests_total&start=1700006400&end=1700007200&limit=40000",
    ),
    (
        "editor: label values for a metric",
        "GET",
        "/api/v1/label/code/values",
        "match%5B%5D=demo_http_requests_total&start=1700006400&end=1700007200",
        "",
    ),
    (
        "metrics browser: series",
        "POST",
        "/api/v1/series",
        "",
        "match%5B%5D=%7B__name__%21%3D%22%22%7D&start=1700006400&end=1700007200&limit=40000",
    ),
];

#[test]
fn grafana_sequence_succeeds_through_the_proxy() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    for (step, method, path, query, form) in SEQUENCE {
        let answer = send(&proxy.url(), method, path, query, form);
        assert_eq!(answer.status, 200, "{step}: {answer:?}");
        let json = answer.json();
        assert_eq!(json["status"], "success", "{step}: {answer:?}");
        assert!(json.get("data").is_some(), "{step}: no data");
    }
}

#[test]
fn grafana_falls_back_to_get_after_405() {
    // Grafana tries POST for resource calls and retries with GET on 400 or 405.
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let post = send(&proxy.url(), "POST", "/api/v1/status/buildinfo", "", "");
    assert_eq!(post.status, 405);
    assert_eq!(
        post.json()["status"],
        "error",
        "Grafana parses error bodies as JSON"
    );
    let get = send(&proxy.url(), "GET", "/api/v1/status/buildinfo", "", "");
    assert_eq!(get.json()["status"], "success");
    assert!(
        get.json()["data"].get("features").is_none(),
        "no features: Grafana must not take this for Mimir"
    );
}

#[test]
fn grafana_sequence_over_a_replica_pair_answers_as_one_prometheus() {
    let (a, b) = (demo_prometheus(), demo_prometheus());
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n      external_labels: {{replica: a}}\n    - url: {}\n      external_labels: {{replica: b}}\nquery:\n  replica_labels: [replica]\n",
        a.url(),
        b.url()
    );
    let proxy = TestProxy::start(&yaml, &a.url());
    // Answers that say when something ran are not compared.
    let timed = ["/api/v1/rules", "/api/v1/status/buildinfo"];
    for (step, method, path, query, form) in SEQUENCE {
        let answer = send(&proxy.url(), method, path, query, form);
        assert_eq!(answer.status, 200, "{step}: {answer:?}");
        assert_eq!(answer.json()["status"], "success", "{step}: {answer:?}");
        if !timed.contains(path) {
            let direct = send(&a.url(), method, path, query, form);
            assert_eq!(answer.json()["data"], direct.json()["data"], "{step}");
        }
    }
}
