//! Queries too long or too deep are refused with 400 before anything recursive runs, in
//! every mode; queries at the deepest allowed nesting are answered. Each report of a
//! crash (a stack overflow that aborted the process) is a row here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use sketch_proxy::promql::shape::MAX_DEPTH;
use sketch_proxy_testkit::demo::TEST_END;
use support::{TestProxy, demo_prometheus, send};

fn form(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("query", query);
    out.append_pair("time", &TEST_END.to_string());
    out.finish()
}

/// `n` terms of `term` joined by `op`.
fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

/// `term` inside `n` of `open` … `)`.
fn nested(open: &str, term: &str, n: usize) -> String {
    format!("{}{term}{}", open.repeat(n), ")".repeat(n))
}

/// The reported crashes: (what, query).
fn reported() -> Vec<(&'static str, String)> {
    vec![
        (
            "a sketch function plus 2,000 terms of +1 (default mode)",
            format!("entropy_over_time(up[5m]){}", "+1".repeat(2000)),
        ),
        ("40,000 nested parentheses", nested("(", "up", 40_000)),
        ("2,000 nested abs(", nested("abs(", "up", 2000)),
        ("2,000 terms of up or up", chain("up", " or ", 2000)),
        ("2,000 terms of 1+", chain("1", "+", 2000)),
        ("20,000 terms of 1+", chain("1", "+", 20_000)),
    ]
}

#[test]
fn the_reported_deep_queries_get_400_in_every_mode_and_the_proxy_keeps_serving() {
    let prometheus = demo_prometheus();
    for mode in ["auto", "local"] {
        let proxy = TestProxy::start(&format!("query:\n  mode: {mode}\n"), &prometheus.url());
        for (what, query) in reported() {
            for (method, path) in [("POST", "/api/v1/query"), ("POST", "/api/v1/query_range")] {
                let body = format!("{}&start=1&end=2&step=1", form(&query));
                let answer = send(&proxy.url(), method, path, "", &body);
                assert_eq!(answer.status, 400, "{mode}, {what}, {path}: {answer:?}");
                let json = answer.json();
                assert_eq!(json["errorType"], "bad_data", "{mode}, {what}");
                let error = json["error"].as_str().unwrap();
                assert!(
                    error.contains("query nests deeper than 256 levels (limits.max_query_depth)"),
                    "{mode}, {what}: {error}"
                );
            }
        }
        let up = send(&proxy.url(), "POST", "/api/v1/query", "", &form("up"));
        assert_eq!(up.status, 200, "{mode}: {up:?}");
    }
}

#[test]
fn match_and_format_query_are_bounded_too() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let deep = nested("(", "up", 40_000);
    let mut series = form_urlencoded::Serializer::new(String::new());
    series.append_pair("match[]", &deep);
    let answer = send(&proxy.url(), "POST", "/api/v1/series", "", &series.finish());
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"match[]\": query nests deeper")
    );
    let answer = send(&proxy.url(), "POST", "/api/v1/format_query", "", &form(&deep));
    assert_eq!(answer.status, 400, "{answer:?}");
}

#[test]
fn a_query_longer_than_the_limit_gets_400() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("limits:\n  max_query_bytes: 1000\n", &prometheus.url());
    let long = format!("up{{job=~\"{}\"}}", "a".repeat(1000));
    let answer = send(&proxy.url(), "POST", "/api/v1/query", "", &form(&long));
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(
        answer.json()["error"],
        "invalid parameter \"query\": query is 1011 bytes long, more than the 1000 allowed (limits.max_query_bytes)"
    );
}

/// The deepest nesting the configuration allows is parsed, evaluated, printed and
/// dropped on the stacks the proxy's threads have, in an unoptimized build too.
#[test]
fn queries_at_the_deepest_allowed_nesting_are_answered() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start(
        &format!("query:\n  mode: local\nlimits:\n  max_query_depth: {MAX_DEPTH}\n"),
        &prometheus.url(),
    );
    let n = MAX_DEPTH - 2;
    let queries = [
        chain("1", "+", MAX_DEPTH),
        nested("(", "demo_request_duration_seconds", MAX_DEPTH - 1),
        nested("abs(", "demo_request_duration_seconds", MAX_DEPTH - 1),
        chain("demo_request_duration_seconds", " or ", MAX_DEPTH),
        format!("sum(rate(demo_http_requests_total[5m])){}", " + 1".repeat(n - 3)),
        nested("-(", "demo_request_duration_seconds", n / 2),
    ];
    for query in &queries {
        let answer = send(&proxy.url(), "POST", "/api/v1/query", "", &form(query));
        assert_eq!(answer.status, 200, "{}…: {answer:?}", &query[..40]);
        let answer = send(&proxy.url(), "POST", "/api/v1/format_query", "", &form(query));
        assert_eq!(answer.status, 200, "{}…: {answer:?}", &query[..40]);
    }
    let one_more = chain("1", "+", MAX_DEPTH + 1);
    let answer = send(&proxy.url(), "POST", "/api/v1/query", "", &form(&one_more));
    assert_eq!(answer.status, 400, "{answer:?}");
}
