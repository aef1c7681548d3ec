//! OpenTelemetry traces from the real binary, received by an OTLP/HTTP endpoint in the
//! test and decoded with the collector's own protobufs: the span tree of a
//! sketch-served query under the client's `traceparent`, the trace id in the query log,
//! and the trace context passed on to downstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use sketch_proxy_testkit::{Recorder, free_port, wait_until};
use support::write;
use support::{demo_prometheus, send_with};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every span the collector received.
fn spans(collector: &Recorder) -> Vec<Span> {
    collector
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/traces")
        .flat_map(|r| {
            ExportTraceServiceRequest::decode(r.body.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

/// Starts the binary with traces sent to `collector`; returns it and its URL.
fn start(collector: &Recorder, args: &[String]) -> (support::Binary, String) {
    let endpoint = collector.url();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "sketch-proxy-under-test"),
    ];
    support::start_binary_with_env(free_port().unwrap(), args, &env)
}

#[test]
fn a_sketch_served_query_is_one_trace_under_the_clients_span() {
    let collector = Recorder::answering("application/x-protobuf", b"").unwrap();
    let prometheus = demo_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("queries.log");
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(
        &config,
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\nquery:\n  log_file: {}\nsketches:\n  rules:\n    - match: 'traced'\n      functions: [quantile_over_time]\n      retain: 3h\n",
            dir.path().join("queue").display(),
            log.display()
        ),
    )
    .unwrap();
    let (_proxy, url) = start(
        &collector,
        &[
            format!("--config.file={}", config.display()),
            format!("--upstream={}", prometheus.url()),
        ],
    );
    let now = write::now_ms();
    let data = write::generate("traced", 2, 360, now - 3_600_000, 10_000, 5);
    assert_eq!(write::post(&url, &data).status, 204);
    // Sketches serve once their rule's backfill is done.
    wait_until(Duration::from_secs(60), "the backfill to end", || {
        let status = support::send(&url, "GET", "/api/v1/status/sketches", "", "").json();
        status["data"]["rules"]
            .as_array()
            .is_some_and(|rules| !rules.is_empty() && rules.iter().all(|r| r["backfill"]["state"] == "done"))
    })
    .unwrap();

    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let at = (now - 60_000) as f64 / 1000.0;
    let answer = send_with(
        &url,
        "GET",
        "/api/v1/query",
        &format!("query=quantile_over_time(0.9,traced[30m])&time={at}"),
        "",
        &[("traceparent", &traceparent)],
    );
    assert_eq!(answer.path.as_deref(), Some("sketch"), "{}", answer.body);

    let expected = [
        "GET /api/v1/query",
        "check",
        "queue",
        "plan",
        "evaluate",
        "sketch_plan",
        "eval",
        "plugin_call",
        "encode",
    ];
    let missing = || {
        let got = spans(&collector);
        expected
            .iter()
            .filter(|name| {
                !got.iter()
                    .any(|s| s.name.starts_with(*name) && hex(&s.trace_id) == TRACE_ID)
            })
            .collect::<Vec<_>>()
    };
    wait_until(
        Duration::from_secs(30),
        "the query's spans at the collector",
        || missing().is_empty(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: missing {:?} of {:?}",
            missing(),
            spans(&collector)
                .iter()
                .map(|s| (&s.name, hex(&s.trace_id)))
                .collect::<Vec<_>>()
        )
    });
    let spans: Vec<Span> = spans(&collector)
        .into_iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let by_id: BTreeMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let parent_name = |s: &Span| by_id.get(&hex(&s.parent_span_id)).map(|p| p.name.clone());
    let one = |prefix: &str| {
        let found: Vec<&Span> = spans.iter().filter(|s| s.name.starts_with(prefix)).collect();
        assert!(!found.is_empty(), "no {prefix} span in {spans:#?}");
        found[0]
    };
    let request = one("GET /api/v1/query");
    assert_eq!(
        hex(&request.parent_span_id),
        CLIENT_SPAN,
        "the client's span is the parent"
    );
    // (span, its parent)
    for (child, parent) in [
        ("check", "GET /api/v1/query"),
        ("queue", "GET /api/v1/query"),
        ("plan", "GET /api/v1/query"),
        ("evaluate", "GET /api/v1/query"),
        ("sketch_plan", "evaluate"),
        ("eval", "evaluate"),
        ("plugin_call", "eval"),
        ("encode", "evaluate"),
    ] {
        assert_eq!(
            parent_name(one(child)).as_deref(),
            Some(parent),
            "parent of {child}"
        );
    }

    let line = std::fs::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(entry["traceID"], TRACE_ID, "{entry}");
    assert_eq!(entry["answeredBy"], "sketch", "{entry}");
    assert_eq!(
        entry["params"]["query"], "quantile_over_time(0.9,traced[30m])",
        "{entry}"
    );
    assert_eq!(entry["httpRequest"]["clientIP"], "127.0.0.1", "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
    for timing in [
        "readBodyTime",
        "checkTime",
        "execQueueTime",
        "evalTotalTime",
        "execTotalTime",
    ] {
        assert!(
            entry["stats"]["timings"][timing].as_f64().is_some(),
            "{timing} in {entry}"
        );
    }
}

#[test]
fn downstream_gets_the_trace_context_of_the_proxys_span() {
    let collector = Recorder::answering("application/x-protobuf", b"").unwrap();
    let downstream = Recorder::start().unwrap();
    let (_proxy, url) = start(&collector, &[format!("--upstream={}", downstream.url())]);
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let answer = send_with(
        &url,
        "GET",
        "/api/v1/labels",
        "",
        "",
        &[("traceparent", &traceparent)],
    );
    assert_eq!(answer.status, 200);
    let sent = downstream.requests();
    let passed = sent[0].header("traceparent").unwrap();
    let parts: Vec<&str> = passed.split('-').collect();
    assert_eq!(parts[1], TRACE_ID, "same trace");
    assert_ne!(
        parts[2], CLIENT_SPAN,
        "a span of the proxy's is downstream's parent"
    );
    wait_until(Duration::from_secs(30), "the forward span", || {
        spans(&collector)
            .iter()
            .any(|s| s.name == "forward" && hex(&s.span_id) == parts[2])
    })
    .unwrap();
}
