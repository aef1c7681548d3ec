//! A tier of sketch-proxies when a leaf misbehaves (issue 20's defences, end to end):
//! a real leaf that refuses a pushed part (over its sample limit) fails the query at
//! the top with the leaf's reason, instead of a partial answer; a leaf answering a
//! hostile compact answer (garbage, a truncated message, a body that is not the gzip it
//! claims) counts as a failed endpoint, named in a partial answer's warning, or fails
//! the query when partial answers are refused; a gzip bomb is cut at the read limit,
//! which the warning or the error names; and the top keeps answering afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::TestProxy;
use support::write::{self, Stored};

const METRIC: &str = "refusals_m";

/// A proxy sketching `METRIC` for `quantile_over_time` in front of its own Prometheus,
/// with `query` settings added. A leaf whose sample limit is lower than a backfill's
/// reads is told not to backfill (`backfill: false`).
fn leaf(prometheus: &Prometheus, dir: &tempfile::TempDir, query: &str) -> TestProxy {
    let backfill = query.is_empty();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  backfill: {backfill}\n  rules:\n    - match: {METRIC}\n      functions: [quantile_over_time]\n      retain: 3h\n      complete: true\ncache:\n  enabled: false\n{query}",
        dir.path().display()
    );
    TestProxy::start(&yaml, &prometheus.url())
}

/// Writes `data` through `proxy` and waits until `prometheus` holds it and no backfill
/// runs.
fn write_through(proxy: &TestProxy, prometheus: &Prometheus, data: &Stored, end: i64) {
    assert_eq!(write::post(&proxy.url(), data).status, 204);
    wait_until(Duration::from_secs(60), "Prometheus to hold every sample", || {
        write::samples(&write::stored(&prometheus.url(), METRIC, end, "2h")) == write::samples(data)
    })
    .unwrap();
    wait_until(Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
}

/// An HTTP server on loopback that answers every query request with `status`,
/// `headers` and `body`, and anything else with an empty successful JSON answer.
/// Returns its URL; it serves until the test process ends.
fn hostile_leaf(headers: &'static str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0; 4096];
            // The request head, then as much body as it announces.
            let head_end = loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
                if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while request.len() < head_end + length {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let query = head.lines().next().is_some_and(|l| l.contains("/api/v1/query"));
            let (headers, body) = if query {
                (headers, body.as_slice())
            } else {
                (
                    "Content-Type: application/json\r\n",
                    br#"{"status":"success","data":{}}"#.as_slice(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    url
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_leaf_refusing_a_pushed_part_fails_the_query_at_the_top_with_its_reason() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Evaluating raw data itself, this leaf holds at most 100 samples a query.
    let strict = leaf(&prometheus, &dir, "query:\n  mode: local\n  max_samples: 100\n");
    let start = (write::now_ms() - 2_400_000) / 1000 * 1000;
    let data = write::generate(METRIC, 4, 900, start, 1000, 5);
    let end = start + 899 * 1000;
    write_through(&strict, &prometheus, &data, end);
    let other_prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = leaf(&other_prometheus, &other_dir, "");
    let top = TestProxy::start(
        &format!(
            "downstream:\n  endpoints:\n    - url: {}\n      kind: sketch_proxy\n    - url: {}\n      kind: sketch_proxy\nquery:\n  push_down: true\ncache:\n  enabled: false\n",
            strict.url(),
            other.url()
        ),
        &strict.url(),
    );
    // An aggregation of a raw-data function: pushed whole, evaluated by the leaf.
    let query = format!("sum(rate({METRIC}[5m]))");
    let answer = support::range_query(&top.url(), &query, (end - 60_000, end, 10_000), "");
    assert_eq!(answer.status, 422, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["status"], "error");
    assert_eq!(json["errorType"], "execution", "{}", answer.body);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("query processing would load too many samples into memory"),
        "{}",
        answer.body
    );
    // The leaf's own answer, passed on: the top alone is far from its limit.
    let direct = support::range_query(&strict.url(), &query, (end - 60_000, end, 10_000), "");
    assert_eq!((direct.status, &direct.body), (answer.status, &answer.body));
    // The refusal is the query's fault, not the leaf's: it still counts as up, and
    // answers what its sketches hold (no raw data read, so no limit reached).
    let query = format!("quantile_over_time(0.9, {METRIC}[10m])");
    let fine = support::range_query(&top.url(), &query, (end - 60_000, end, 10_000), "");
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert!(!fine.body.contains("partial response"), "{}", fine.body);
    assert_eq!(fine.json()["data"]["result"].as_array().unwrap().len(), 4);
}

#[test]
fn hostile_compact_answers_from_a_leaf_are_a_failed_endpoint_not_a_crash() {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let honest = leaf(&prometheus, &dir, "");
    let start = (write::now_ms() - 2_400_000) / 1000 * 1000;
    let data = write::generate(METRIC, 4, 2000, start, 1000, 9);
    let end = start + 1999 * 1000;
    write_through(&honest, &prometheus, &data, end);
    let window = (start + 1_800_000, end, 20_000);
    let query = format!("quantile_over_time(0.9, {METRIC}[30m])");
    let media = sketch_proxy::api::wire::compact::MEDIA_TYPE;
    let compact_headers: &'static str = Box::leak(format!("Content-Type: {media}\r\n").into_boxed_str());
    let gzipped_headers: &'static str =
        Box::leak(format!("Content-Type: {media}\r\nContent-Encoding: gzip\r\n").into_boxed_str());
    // An honest compact answer to cut short: the honest leaf's own.
    let form = format!(
        "query={}&start={}&end={}&step=20",
        form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>(),
        window.0 as f64 / 1000.0,
        window.1 as f64 / 1000.0
    );
    let request = http::Request::post(format!("{}/api/v1/query_range", honest.url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", media)
        .body(form.into_bytes())
        .unwrap();
    let mut response = sketch_proxy_testkit::http_agent().run(request).unwrap();
    assert_eq!(response.headers()["content-type"], media);
    let whole = response.body_mut().read_to_vec().unwrap();
    // (what the hostile leaf sends, headers)
    let cases: [(&str, Vec<u8>, &'static str); 3] = [
        (
            "garbage",
            b"\x0a\xff\xff\xff\xff\x0f garbage".to_vec(),
            compact_headers,
        ),
        (
            "a truncated answer",
            whole[..whole.len() / 2].to_vec(),
            compact_headers,
        ),
        ("not gzip", b"plainly not gzip".to_vec(), gzipped_headers),
    ];
    let top_over = |hostile: &str| {
        TestProxy::start(
            &format!(
                "downstream:\n  endpoints:\n    - url: {}\n      kind: sketch_proxy\n      external_labels: {{shard: a}}\n    - url: {hostile}\n      kind: sketch_proxy\n      external_labels: {{shard: b}}\nquery:\n  push_down: true\n  max_read_bytes: 1048576\ncache:\n  enabled: false\n",
                honest.url()
            ),
            &honest.url(),
        )
    };
    for (what, body, headers) in cases {
        let hostile = hostile_leaf(headers, body);
        let top = top_over(&hostile);
        let partial = support::range_query(&top.url(), &query, window, "");
        assert_eq!(partial.status, 200, "{what}: {}", partial.body);
        assert!(
            partial
                .body
                .contains(&format!("partial response: endpoint {hostile} (")),
            "{what}: {}",
            partial.body
        );
        assert_eq!(partial.cache_control.as_deref(), Some("no-store"), "{what}");
        let series = partial.json()["data"]["result"].as_array().unwrap().len();
        assert_eq!(series, 4, "{what}: the honest leaf's series");
        let strict = support::range_query(&top.url(), &query, window, "&partial_response=false");
        assert_eq!(strict.status, 503, "{what}: {}", strict.body);
        assert_eq!(strict.json()["status"], "error", "{what}");
        // Still serving.
        let again = support::range_query(&top.url(), &query, window, "");
        assert_eq!(again.status, 200, "{what}: {}", again.body);
    }
    // A gzip bomb: 64 MiB of zeros compressed to about 64 KiB, against a 1 MiB read
    // limit. Inflating stops at the limit: the endpoint failed on it, said in the
    // partial answer's warning; asked for a whole answer, the query fails on the limit.
    let hostile = hostile_leaf(gzipped_headers, gzip(&vec![0; 64 << 20]));
    let top = top_over(&hostile);
    let partial = support::range_query(&top.url(), &query, window, "");
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert!(
        partial.body.contains(&format!(
            "partial response: endpoint {hostile} (the query would load more than 1048576 bytes)"
        )),
        "{}",
        partial.body
    );
    let strict = support::range_query(&top.url(), &query, window, "&partial_response=false");
    assert_eq!(strict.status, 422, "{}", strict.body);
    assert_eq!(strict.json()["errorType"], "execution");
    assert!(
        strict
            .body
            .contains("the query would load more than 1048576 bytes"),
        "{}",
        strict.body
    );
}
