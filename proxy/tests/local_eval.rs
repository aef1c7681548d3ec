//! Local evaluation against a real Prometheus 2.42: range and instant queries answered
//! by the proxy's engine equal Prometheus' own answers; the proxy-only functions answer
//! over a vanilla Prometheus; every limit ends in Prometheus' error type.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sketch_proxy_testkit::demo::{TEST_END, TEST_START};
use sketch_proxy_testkit::{http_agent, wait_until};
use support::{Answer, TestProxy, demo_prometheus, send};

/// Dashboard-style queries over the demo data, each exercising a different part of the
/// engine.
const QUERIES: &[&str] = &[
    "up",
    "rate(demo_http_requests_total[5m])",
    "sum by (job, code) (rate(demo_http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(demo_http_request_duration_seconds_bucket[5m])))",
    "quantile_over_time(0.99, demo_request_duration_seconds[10m])",
    "topk(2, demo_request_duration_seconds)",
    "max_over_time(rate(demo_http_requests_total[1m])[10m:30s])",
    "demo_http_requests_total offset 5m / on(instance, code, method) group_left demo_http_requests_total",
    "increase(demo_http_requests_total[10m] @ 1700003600)",
    "absent(no_such_metric{job=\"x\"})",
    "count_values(\"celsius\", demo_temperature_celsius)",
    "demo_temperature_celsius > bool 20",
    "avg without (instance) (demo_request_duration_seconds)",
    "irate(demo_http_requests_total[2m]) + on(instance, code, method, job) idelta(demo_http_requests_total[2m])",
    "deriv(demo_temperature_celsius[10m])",
    "predict_linear(demo_temperature_celsius[10m], 600)",
    "holt_winters(demo_temperature_celsius[10m], 0.5, 0.5)",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "time() - timestamp(up)",
    "scalar(sum(up)) * 2",
    "stddev_over_time(demo_temperature_celsius[15m]) or changes(demo_temperature_celsius[15m])",
    "resets(demo_http_requests_total[1h]) unless on(instance) demo_request_duration_seconds > 0.1",
    "sum(demo_http_requests_total) by (method) / ignoring(method) group_left sum(demo_http_requests_total)",
    "quantile(0.5, rate(demo_http_requests_total[5m])) by (code)",
];

/// Values compare like `promql/test.go`'s `almostEqual`.
fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let diff = (a - b).abs();
    diff / (a.abs() + b.abs()) < 1e-9
}

fn number(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

/// Series of an answer by label set: (timestamp, value) points.
fn series(answer: &Answer) -> BTreeMap<String, Vec<(f64, f64)>> {
    let json = answer.json();
    assert_eq!(json["status"], "success", "{}", answer.body);
    let mut out = BTreeMap::new();
    let result = &json["data"]["result"];
    if json["data"]["resultType"] == "scalar" {
        out.insert(
            "scalar".to_owned(),
            vec![(result[0].as_f64().unwrap(), number(&result[1]))],
        );
        return out;
    }
    for s in result.as_array().unwrap() {
        let points: Vec<(f64, f64)> = match s.get("values") {
            Some(values) => values
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), number(&p[1])))
                .collect(),
            None => vec![(s["value"][0].as_f64().unwrap(), number(&s["value"][1]))],
        };
        out.insert(s["metric"].to_string(), points);
    }
    out
}

fn assert_same(query: &str, local: &Answer, prometheus: &Answer) {
    assert_eq!(local.path.as_deref(), Some("engine"), "{query}");
    assert_eq!(local.status, prometheus.status, "{query}: {}", local.body);
    let (l, p) = (local.json(), prometheus.json());
    assert_eq!(l["data"]["resultType"], p["data"]["resultType"], "{query}");
    let (ls, ps) = (series(local), series(prometheus));
    assert_eq!(
        ls.keys().collect::<Vec<_>>(),
        ps.keys().collect::<Vec<_>>(),
        "{query}: label sets differ"
    );
    for (labels, points) in &ps {
        let mine = &ls[labels];
        assert_eq!(mine.len(), points.len(), "{query} {labels}: point counts differ");
        for (a, b) in mine.iter().zip(points) {
            assert!(
                a.0 == b.0 && almost_equal(a.1, b.1),
                "{query} {labels}: {a:?} vs {b:?}"
            );
        }
    }
    if p["data"]["resultType"] == "matrix" || query.starts_with("topk") {
        // Range results come sorted by labels; the order must be Prometheus' too.
        let order = |j: &Value| -> Vec<String> {
            j["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["metric"].to_string())
                .collect()
        };
        assert_eq!(order(&l), order(&p), "{query}: order differs");
    }
}

#[test]
fn local_answers_equal_prometheus_answers() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("query:\n  mode: local\n", &prometheus.url());
    for query in QUERIES {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        // A range of one step is still a range: Prometheus answers a matrix.
        for (start, end) in [(TEST_START + 600, TEST_END), (TEST_START + 900, TEST_START + 900)] {
            let range = format!("query={q}&start={start}&end={end}&step=60");
            let local = send(&proxy.url(), "GET", "/api/v1/query_range", &range, "");
            let direct = send(&prometheus.url(), "GET", "/api/v1/query_range", &range, "");
            assert_same(query, &local, &direct);
        }
        for at in [TEST_START + 900, TEST_START + 3600 + 7, TEST_END - 1] {
            let instant = format!("query={q}&time={at}");
            let local = send(&proxy.url(), "POST", "/api/v1/query", "", &instant);
            let direct = send(&prometheus.url(), "POST", "/api/v1/query", "", &instant);
            assert_same(query, &local, &direct);
        }
    }
}

#[test]
fn plain_queries_are_forwarded_in_auto_mode() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let query = format!("query=up&time={}", TEST_START + 900);
    let via_proxy = send(&proxy.url(), "GET", "/api/v1/query", &query, "");
    assert_eq!(via_proxy.path.as_deref(), Some("downstream"));
    assert_eq!(
        via_proxy,
        send(&prometheus.url(), "GET", "/api/v1/query", &query, "")
    );
}

/// Shannon entropy (bits), L2 norm and count of distinct values of `values`.
fn frequency_stats(values: &[f64]) -> (f64, f64, f64) {
    let mut counts: BTreeMap<u64, f64> = BTreeMap::new();
    for v in values {
        *counts.entry(v.to_bits()).or_default() += 1.0;
    }
    let n = values.len() as f64;
    let entropy = -counts.values().map(|c| c / n * (c / n).log2()).sum::<f64>();
    let l2 = counts.values().map(|c| c * c).sum::<f64>().sqrt();
    (entropy, l2, counts.len() as f64)
}

#[test]
fn proxy_functions_answer_over_a_vanilla_prometheus() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    let (start, end, step, window) = (TEST_START + 1800, TEST_START + 5400, 300, 1800);
    // The raw samples, straight from Prometheus.
    let raw = send(
        &prometheus.url(),
        "GET",
        "/api/v1/query",
        &format!("query=demo_temperature_celsius[2h]&time={TEST_END}"),
        "",
    );
    let raw = series(&raw);
    assert!(!raw.is_empty());
    for (i, function) in ["entropy_over_time", "l2_over_time", "distinct_over_time"]
        .iter()
        .enumerate()
    {
        let query =
            format!("query={function}(demo_temperature_celsius[30m])&start={start}&end={end}&step={step}");
        let answer = send(&proxy.url(), "GET", "/api/v1/query_range", &query, "");
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.path.as_deref(), Some("engine"));
        let got = series(&answer);
        assert_eq!(got.len(), raw.len(), "{function}: one series per room");
        for (labels, points) in &raw {
            let name_dropped = labels.replace("\"__name__\":\"demo_temperature_celsius\",", "");
            let mine = &got[&name_dropped];
            assert_eq!(mine.len() as i64, (end - start) / step + 1, "{function} {labels}");
            for (t, v) in mine {
                let t_ms = (t * 1000.0) as i64;
                let window: Vec<f64> = points
                    .iter()
                    .filter(|p| {
                        let pt = (p.0 * 1000.0) as i64;
                        pt >= t_ms - window * 1000 && pt <= t_ms
                    })
                    .map(|p| p.1)
                    .collect();
                let stats = frequency_stats(&window);
                let want = [stats.0, stats.1, stats.2][i];
                assert!(
                    (v - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{function} {labels} at {t}: {v} vs {want}"
                );
            }
        }
    }
}

#[test]
fn limits_end_in_prometheus_error_types() {
    let prometheus = demo_prometheus();
    let at = TEST_START + 3600;
    let run = |config: &str, query: &str| -> Answer {
        let proxy = TestProxy::start(config, &prometheus.url());
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        send(
            &proxy.url(),
            "GET",
            "/api/v1/query",
            &format!("query={q}&time={at}"),
            "",
        )
    };
    // (what, config, query, status, errorType, message start)
    let cases: &[(&str, &str, &str, u16, &str, &str)] = &[
        (
            "samples",
            "query:\n  mode: local\n  max_samples: 100\n",
            "sum(count_over_time(demo_http_requests_total[1h]))",
            422,
            "execution",
            "query processing would load too many samples into memory in query execution",
        ),
        (
            "series",
            "query:\n  mode: local\n  max_series: 3\n",
            "sum(up)",
            422,
            "execution",
            "the query selects more than 3 series (query.max_series)",
        ),
        (
            "time",
            "query:\n  mode: local\n  timeout: 1ms\n",
            "count(max_over_time(demo_request_duration_seconds[1h:1s]))",
            503,
            "timeout",
            "query timed out in expression evaluation",
        ),
        (
            "evaluation error",
            "query:\n  mode: local\n",
            "demo_http_requests_total + ignoring(code) demo_http_requests_total",
            422,
            "execution",
            "found duplicate series for the match group",
        ),
    ];
    for (what, config, query, status, error_type, message) in cases {
        let answer = run(config, query);
        assert_eq!(answer.status, *status, "{what}: {}", answer.body);
        let json = answer.json();
        assert_eq!(json["errorType"], *error_type, "{what}: {}", answer.body);
        assert!(
            json["error"].as_str().unwrap().starts_with(message),
            "{what}: {}",
            answer.body
        );
    }
    // Downstream gone: its remote read fails.
    let proxy = TestProxy::start("query:\n  mode: local\n", "http://127.0.0.1:9");
    let answer = send(&proxy.url(), "GET", "/api/v1/query", "query=up", "");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["errorType"], "unavailable");
}

#[test]
fn a_client_that_goes_away_cancels_its_evaluation() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("query:\n  mode: local\n", &prometheus.url());
    // A query no machine finishes: the middle subquery alone takes 1.7 million steps
    // over windows of 864,000 samples (10^12 samples read), while it holds only
    // 2.6 million.
    let query: String = form_urlencoded::byte_serialize(
        b"max_over_time(max_over_time(max_over_time(vector(1)[1d:100ms])[1d:100ms])[1d:100ms])",
    )
    .collect();
    let url = format!("{}/api/v1/query?query={query}&time={TEST_END}", proxy.url());
    let impatient = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(500)))
        .build()
        .new_agent();
    assert!(
        impatient.get(&url).call().is_err(),
        "the query should outlast the client"
    );
    let canceled = || {
        let metrics = http_agent()
            .get(format!("{}/metrics", proxy.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        metrics.contains("sketch_proxy_local_queries_canceled_total 1")
    };
    wait_until(
        Duration::from_secs(60),
        "the evaluation to be cancelled",
        canceled,
    )
    .unwrap();
}

/// Reported: `rate(up[1y:1ms])` with `timeout=2s` ran for about 80 s of CPU, because
/// the steps of a selector inside a subquery were never checked against the deadline.
/// Now the query ends at its timeout; the client's own deadline, 30 times longer,
/// only keeps a regression from hanging the test.
#[test]
fn a_fine_subquery_stops_at_the_query_timeout() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("query:\n  mode: local\n", &prometheus.url());
    let query: String =
        form_urlencoded::byte_serialize(b"count(rate(demo_request_duration_seconds[1y:1ms]))").collect();
    let url = format!(
        "{}/api/v1/query?query={query}&time={TEST_END}&timeout=1s",
        proxy.url()
    );
    let patient = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut answer = patient
        .get(&url)
        .call()
        .expect("an answer before the client's deadline");
    assert_eq!(answer.status(), 503);
    let body: Value = serde_json::from_str(&answer.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["errorType"], "timeout", "{body}");
}

/// A downstream like a Thanos Querier: `/api/v1/read` is 404, the query API answers
/// (from the real Prometheus behind it). Serves until dropped.
struct NoRemoteRead {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

impl NoRemoteRead {
    fn start(prometheus: String) -> Self {
        use axum::extract::RawQuery;
        use axum::routing::any;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let query = move |RawQuery(query): RawQuery, body: String| {
                    let prometheus = prometheus.clone();
                    async move {
                        let answer = tokio::task::spawn_blocking(move || {
                            send(
                                &prometheus,
                                "POST",
                                "/api/v1/query",
                                &query.unwrap_or_default(),
                                &body,
                            )
                        })
                        .await
                        .unwrap();
                        ([("content-type", "application/json")], answer.body)
                    }
                };
                let app = axum::Router::new()
                    .route("/api/v1/query", any(query))
                    .fallback(|| async { (http::StatusCode::NOT_FOUND, "404 page not found") });
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            url,
            _stop: stop,
            _thread: thread,
        }
    }
}

#[test]
fn a_downstream_without_remote_read_is_read_through_its_query_api() {
    let prometheus = demo_prometheus();
    let querier = NoRemoteRead::start(prometheus.url());
    let proxy = TestProxy::start("query:\n  mode: local\n", &querier.url);
    for query in [
        "sum by (code) (rate(demo_http_requests_total[5m]))",
        "entropy_over_time(demo_temperature_celsius[30m])",
    ] {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let range = format!("query={q}&start={}&end={}&step=300", TEST_START + 600, TEST_END);
        let local = send(&proxy.url(), "GET", "/api/v1/query_range", &range, "");
        assert_eq!(local.status, 200, "{query}: {}", local.body);
        if query.starts_with("entropy") {
            assert_eq!(series(&local).len(), 2, "one series per room");
        } else {
            let direct = send(&prometheus.url(), "GET", "/api/v1/query_range", &range, "");
            assert_same(query, &local, &direct);
        }
    }
}
