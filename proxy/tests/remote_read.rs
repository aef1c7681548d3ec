//! The remote-read source against a real Prometheus 2.42: it returns exactly what the
//! query API returns for the same selectors and range, stale markers bit for bit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::time::Duration;

use sketch_proxy::outbound::Outbound;
use sketch_proxy::prompb::STALE_NAN_BITS;
use sketch_proxy::promql::parse_selector;
use sketch_proxy::source::{QueryApi, RemoteRead, Selection, Source, SourceError};
use sketch_proxy_testkit::demo::TEST_END;
use support::write::{self, Stored};

fn plain() -> Outbound {
    Outbound::new(&Default::default(), false, None)
}

fn client(url: &str, max_samples: u64) -> RemoteRead {
    RemoteRead::new(
        &url.parse().unwrap(),
        &plain(),
        Duration::from_secs(30),
        max_samples,
        64 << 20,
    )
    .unwrap()
}

fn select(source: &dyn Source, selections: &[Selection]) -> Result<Vec<Stored>, SourceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = runtime.block_on(source.select(selections, &sketch_proxy::source::ReadScope::default()))?;
    Ok(answers
        .into_iter()
        .map(|series| {
            series
                .into_iter()
                .map(|s| {
                    (
                        s.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                        s.samples.into_iter().map(|x| (x.timestamp, x.value)).collect(),
                    )
                })
                .collect()
        })
        .collect())
}

#[test]
fn selections_return_what_the_query_api_returns() {
    let prometheus = support::demo_prometheus();
    let end = TEST_END * 1000;
    // In Prometheus 2.x `x[2h]` at `end` covers [end − 2h, end], closed like remote read.
    let start = end - 7_200_000;
    let selectors = [
        "demo_http_requests_total",
        "demo_http_requests_total{code=~\"5..\"}",
        "{__name__=~\"demo_.*\", instance!=\"demo-0\"}",
        "no_such_metric",
    ];
    let selections: Vec<Selection> = selectors
        .iter()
        .map(|s| Selection {
            matchers: parse_selector(s).unwrap(),
            start_ms: start,
            end_ms: end,
        })
        .collect();
    // Streamed chunks (what Prometheus answers by default), SAMPLES, and the query API
    // (for downstreams without remote read; the demo data has no stale markers).
    let sources: [Box<dyn Source>; 3] = [
        Box::new(client(&prometheus.url(), 10_000_000)),
        Box::new(client(&prometheus.url(), 10_000_000).samples_only()),
        Box::new(QueryApi::new(
            &prometheus.url().parse().unwrap(),
            &plain(),
            Duration::from_secs(30),
            10_000_000,
            64 << 20,
        )),
    ];
    for source in sources {
        let answers = select(source.as_ref(), &selections).unwrap();
        for (selector, got) in selectors.iter().zip(answers) {
            let expected = write::stored(&prometheus.url(), selector, end, "2h");
            let differing = got
                .iter()
                .find(|(k, v)| expected.get(*k) != Some(*v))
                .map(|(k, _)| k);
            assert_eq!(got.len(), expected.len(), "{selector}: series count");
            assert_eq!(differing, None, "{selector}: samples of this series differ");
        }
    }
}

#[test]
fn an_or_selector_is_the_union_of_its_groups() {
    // Prometheus 2.42's PromQL has no `or` in braces and the proxy refuses it, but the
    // matcher type can hold groups; each group becomes its own remote-read query.
    let prometheus = support::demo_prometheus();
    let end = TEST_END * 1000;
    let selection = |s: &str| Selection {
        matchers: parse_selector(s).unwrap(),
        start_ms: end - 600_000,
        end_ms: end,
    };
    let eq =
        |n: &str, v: &str| promql_parser::label::Matcher::new(promql_parser::label::MatchOp::Equal, n, v);
    let mut either = selection("demo_http_requests_total");
    either.matchers.or_matchers = vec![vec![eq("code", "500")], vec![eq("method", "GET")]];
    let answers = select(
        &client(&prometheus.url(), 10_000_000),
        &[
            either,
            selection("demo_http_requests_total{code=\"500\"}"),
            selection("demo_http_requests_total{method=\"GET\"}"),
        ],
    )
    .unwrap();
    let mut union = answers[1].clone();
    union.extend(answers[2].clone());
    assert!(
        answers[1].keys().any(|k| answers[2].contains_key(k)),
        "the groups overlap"
    );
    assert_eq!(answers[0], union);
}

#[test]
fn stale_markers_come_back_bit_exact() {
    let prometheus = sketch_proxy_testkit::Prometheus::start(&Default::default()).unwrap();
    let t = write::now_ms() - 60_000;
    let stale = f64::from_bits(STALE_NAN_BITS);
    let mut data = Stored::new();
    data.insert(
        vec![("__name__".into(), "read_stale".into())],
        vec![(t, 1.0), (t + 1000, stale)],
    );
    assert_eq!(write::post(&prometheus.url(), &data).status, 204);
    let selection = Selection {
        matchers: parse_selector("read_stale").unwrap(),
        start_ms: t - 1,
        end_ms: t + 2000,
    };
    for source in [
        client(&prometheus.url(), 100),
        client(&prometheus.url(), 100).samples_only(),
    ] {
        let answers = select(&source, std::slice::from_ref(&selection)).unwrap();
        let samples = &answers[0].values().next().unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[1].1.to_bits(), STALE_NAN_BITS);
    }
}

#[test]
fn limits_and_failures_are_typed_errors() {
    let prometheus = support::demo_prometheus();
    let selection = Selection {
        matchers: parse_selector("demo_http_requests_total").unwrap(),
        start_ms: 0,
        end_ms: TEST_END * 1000,
    };
    let too_many = select(&client(&prometheus.url(), 10), std::slice::from_ref(&selection)).unwrap_err();
    assert!(
        matches!(
            too_many,
            SourceError::TooMuch {
                what: "samples",
                limit: 10
            }
        ),
        "{too_many}"
    );
    let port = sketch_proxy_testkit::free_port().unwrap();
    let down = select(&client(&format!("http://127.0.0.1:{port}"), 10), &[selection]).unwrap_err();
    assert!(matches!(down, SourceError::Unreachable { .. }), "{down}");
}

/// A query pushed down to an endpoint through the query API (issue 20): the series
/// and points the endpoint answers, from `query_range` over a range and `query` at an
/// instant; an answer that is no vector, and one over the sample limit, are errors.
#[test]
fn a_pushed_query_returns_what_the_endpoint_answers() {
    let prometheus = support::demo_prometheus();
    let end = TEST_END * 1000;
    let api = |max_samples| {
        QueryApi::new(
            &prometheus.url().parse().unwrap(),
            &plain(),
            Duration::from_secs(30),
            max_samples,
            64 << 20,
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let evaluate = |api: &QueryApi, query: &str, range: (i64, i64, i64)| {
        runtime.block_on(api.evaluate(query, range, &[])).map(|series| {
            series
                .into_iter()
                .map(|s| {
                    let labels: Vec<(String, String)> =
                        s.labels.into_iter().map(|l| (l.name, l.value)).collect();
                    let points: Vec<(i64, f64)> =
                        s.samples.into_iter().map(|x| (x.timestamp, x.value)).collect();
                    (labels, points)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        })
    };
    // What Prometheus answers, read here from its JSON.
    let answered = |path: &str| -> Stored {
        let body = sketch_proxy_testkit::http_agent()
            .get(&format!("{}{path}", prometheus.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let values = s["values"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![s["value"].clone()]);
                let points = values
                    .iter()
                    .map(|p| {
                        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                        (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
                    })
                    .collect();
                (labels, points)
            })
            .collect()
    };
    let query = "sum by (code) (rate(demo_http_requests_total[5m]))";
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let (start, step) = (end - 3_600_000, 60_000);
    let got = evaluate(&api(1_000_000), query, (start, end, step)).unwrap();
    assert!(!got.is_empty());
    assert_eq!(
        got,
        answered(&format!(
            "/api/v1/query_range?query={encoded}&start={}&end={}&step=60",
            start / 1000,
            end / 1000
        ))
    );
    let instant = "topk(2, demo_http_requests_total)";
    let encoded: String = form_urlencoded::byte_serialize(instant.as_bytes()).collect();
    let got = evaluate(&api(1_000_000), instant, (end, end, 1)).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got,
        answered(&format!("/api/v1/query?query={encoded}&time={}", end / 1000))
    );
    let scalar = evaluate(&api(1_000_000), "time()", (end, end, 1)).unwrap_err();
    assert!(
        scalar
            .to_string()
            .contains("a scalar instead of a matrix or vector"),
        "{scalar}"
    );
    let over = evaluate(&api(5), query, (start, end, step)).unwrap_err();
    assert!(over.to_string().contains("over the limit of 5"), "{over}");
}
