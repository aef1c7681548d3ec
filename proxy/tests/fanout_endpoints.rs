//! The other read endpoints over several endpoints (issue 8): rules, alerts,
//! exemplars and build information merged as one Prometheus holding everything would
//! answer; Thanos' `storeMatch[]` and `lookback_delta`; endpoints' time ranges; a
//! replica standing in for a stopped one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use sketch_proxy::prompb::{Exemplar, Label, Sample, TimeSeries, WriteRequest};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::write::{self, Stored};
use support::{TestProxy, instant, send};

const RULES: &str = r#"groups:
  - name: fanout
    interval: 1s
    rules:
      - alert: FanoutHigh
        expr: fanout_e > 1
        labels: {severity: page}
        annotations: {summary: "high on {{ $labels.instance }}"}
      - record: fanout_e:sum
        expr: sum(fanout_e)
  - name: another
    interval: 1s
    rules:
      - record: fanout_e:count
        expr: count(fanout_e)
"#;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// Series `fanout_e{instance="host-i"}` = i for `hosts`, each with one exemplar.
fn write_with_exemplars(prometheus: &Prometheus, hosts: &[usize], t: i64) {
    let request = WriteRequest {
        timeseries: hosts
            .iter()
            .map(|&i| TimeSeries {
                labels: vec![
                    label("__name__", "fanout_e"),
                    label("instance", &format!("host-{i}")),
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: t,
                }],
                exemplars: vec![Exemplar {
                    labels: vec![label("trace_id", &format!("trace-{i}"))],
                    value: i as f64 + 0.5,
                    timestamp: t,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    let body = write::snappy(&request.encode_to_vec());
    let answer = write::post_with(&prometheus.url(), &write::HEADERS, body);
    assert_eq!(answer.status, 204, "{}", answer.body);
}

/// `value` without the fields that tell when something ran, alerts sorted by labels.
fn timeless(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for key in ["evaluationTime", "lastEvaluation", "activeAt"] {
                map.remove(key);
            }
            for v in map.values_mut() {
                *v = timeless(v.take());
            }
            if let Some(Value::Array(alerts)) = map.get_mut("alerts") {
                alerts.sort_by_key(|a| a["labels"].to_string());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = timeless(v.take());
            }
        }
        _ => {}
    }
    value
}

/// Polls until every rule of `prometheus` has run and `firing` alerts fire.
fn wait_for_rules(prometheus: &Prometheus, firing: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = send(&prometheus.url(), "GET", "/api/v1/rules", "", "").json();
        let all_ran = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .all(|r| r["health"] == "ok");
        let alerts = send(&prometheus.url(), "GET", "/api/v1/alerts", "", "").json();
        let n = alerts["data"]["alerts"].as_array().unwrap().len();
        if all_ran && n == firing {
            return;
        }
        assert!(Instant::now() < deadline, "rules did not run: {rules} {alerts}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rules_alerts_exemplars_and_buildinfo_over_two_shards_equal_one_prometheus() {
    let shared = tempfile::tempdir().unwrap();
    let options = PrometheusOptions {
        rules: Some(RULES.to_owned()),
        rules_path: Some(shared.path().join("rules.yml")),
        extra_args: vec!["--enable-feature=exemplar-storage".to_owned()],
        ..PrometheusOptions::default()
    };
    let start = || Prometheus::start(&options).unwrap();
    let (shard0, shard1, all) = (start(), start(), start());
    let t = write::now_ms() - 5_000;
    write_with_exemplars(&shard0, &[0, 2], t);
    write_with_exemplars(&shard1, &[1, 3], t);
    write_with_exemplars(&all, &[0, 1, 2, 3], t);
    wait_for_rules(&shard0, 1);
    wait_for_rules(&shard1, 1);
    wait_for_rules(&all, 2);
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n    - url: {}\n",
        shard0.url(),
        shard1.url()
    );
    let proxy = TestProxy::start(&yaml, &shard0.url());
    let exemplars = format!(
        "query=fanout_e&start={}&end={}",
        (t - 60_000) as f64 / 1000.0,
        (t + 60_000) as f64 / 1000.0
    );
    // (path, query, compared without timings)
    let cases = [
        ("/api/v1/rules", "", true),
        ("/api/v1/rules", "type=alert", true),
        ("/api/v1/rules", "type=record", true),
        ("/api/v1/alerts", "", true),
        ("/api/v1/query_exemplars", exemplars.as_str(), false),
        // No selector: 204 and no body.
        ("/api/v1/query_exemplars", "query=vector(1)", false),
    ];
    for (path, query, drop_timings) in cases {
        let want = send(&all.url(), "GET", path, query, "");
        let got = send(&proxy.url(), "GET", path, query, "");
        assert_eq!(got.status, want.status, "{path}?{query}: {}", got.body);
        let merged = got.body.contains("host-3") || got.body.contains("fanout_e:count") || got.status == 204;
        assert!(merged, "{path}?{query}: something to merge: {}", got.body);
        if drop_timings {
            assert_eq!(timeless(got.json()), timeless(want.json()), "{path}?{query}");
        } else {
            assert_eq!(got.body, want.body, "{path}?{query}");
        }
    }
    // Fields in Prometheus' order, numbers as it wrote them.
    let rules = send(&proxy.url(), "GET", "/api/v1/rules", "", "").body;
    let alerting = r#"{"state":"firing","name":"FanoutHigh","query":"fanout_e \u003e 1","duration":0,"keepFiringFor":0,"labels":{"severity":"page"},"annotations":{"summary":"high on {{ $labels.instance }}"},"alerts":[{"labels":{"alertname":"FanoutHigh","instance":"host-2","severity":"page"},"annotations":{"summary":"high on host-2"},"state":"firing","activeAt":"#;
    assert!(rules.contains(alerting), "{rules}");
    assert!(
        rules.contains(
            r#"{"name":"fanout_e:count","query":"count(fanout_e)","health":"ok","evaluationTime":"#
        ),
        "{rules}"
    );
    // With external labels, an exemplar query naming one asks only the shard that has it.
    let labelled = TestProxy::start(
        &format!(
            "downstream:\n  endpoints:\n    - url: {}\n      external_labels: {{shard: s0}}\n    - url: {}\n      external_labels: {{shard: s1}}\n",
            shard0.url(),
            shard1.url()
        ),
        &shard0.url(),
    );
    let query = format!(
        "query=fanout_e%7Bshard%3D%22s1%22%7D&start={}&end={}",
        (t - 60_000) as f64 / 1000.0,
        (t + 60_000) as f64 / 1000.0
    );
    let answer = send(&labelled.url(), "GET", "/api/v1/query_exemplars", &query, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let series: Vec<String> = answer.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}/{}", s["seriesLabels"]["instance"], s["seriesLabels"]["shard"]))
        .collect();
    assert_eq!(
        series,
        [r#""host-1"/"s1""#, r#""host-3"/"s1""#],
        "{}",
        answer.body
    );
    let build = send(&proxy.url(), "GET", "/api/v1/status/buildinfo", "", "");
    assert_eq!(
        build,
        send(&shard0.url(), "GET", "/api/v1/status/buildinfo", "", "")
    );
    // Still refused: what no merge exists for.
    let targets = send(&proxy.url(), "GET", "/api/v1/targets", "", "");
    assert_eq!(targets.status, 501, "{}", targets.body);
}

/// `count(<metric>)` at `at_ms` through the proxy, with `extra` parameters.
fn count(proxy: &TestProxy, metric: &str, at_ms: i64, extra: &str) -> support::Answer {
    instant(&proxy.url(), &format!("count({metric})"), at_ms, extra)
}

fn value(answer: &support::Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["data"]["result"][0]["value"][1].clone()
}

fn series(host: &str, metric: &str, t: i64) -> Stored {
    let labels = vec![
        ("__name__".to_owned(), metric.to_owned()),
        ("instance".to_owned(), host.to_owned()),
    ];
    [(labels, vec![(t, 1.0)])].into_iter().collect()
}

#[test]
fn store_match_lookback_delta_time_ranges_and_a_stopped_replica() {
    let mut servers: Vec<Prometheus> = (0..3)
        .map(|_| Prometheus::start(&PrometheusOptions::default()).unwrap())
        .collect();
    let t = write::now_ms() - 180_000;
    for replica in &servers[..2] {
        assert_eq!(
            write::post(&replica.url(), &series("host-0", "fanout_l", t)).status,
            204
        );
    }
    assert_eq!(
        write::post(&servers[0].url(), &series("host-a", "fanout_only_a", t)).status,
        204
    );
    // Data the third endpoint's declared time range says it cannot hold now.
    assert_eq!(
        write::post(&servers[2].url(), &series("host-old", "fanout_l", t)).status,
        204
    );
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n      external_labels: {{replica: a}}\n    - url: {}\n      external_labels: {{replica: b}}\n    - url: {}\n      max_time: \"2000-01-01T00:00:00Z\"\ncache:\n  enabled: false\nquery:\n  replica_labels: [replica]\n",
        servers[0].url(),
        servers[1].url(),
        servers[2].url()
    );
    // (Without the results cache: the stopped replica's turn would be answered from it.)
    let proxy = TestProxy::start(&yaml, &servers[0].url());
    let now = t + 180_000;
    // The third endpoint is not asked; the replicas are one.
    assert_eq!(value(&count(&proxy, "fanout_l", t, "")), "1");
    let around_t = format!("&start={}&end={}", (t - 1000) / 1000, (t + 1000) / 1000);
    let listed = send(
        &proxy.url(),
        "GET",
        "/api/v1/series",
        &format!("match[]=fanout_l{around_t}"),
        "",
    );
    assert_eq!(
        listed.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    // Without a time range, every endpoint may hold the series.
    let listed = send(&proxy.url(), "GET", "/api/v1/series", "match[]=fanout_l", "");
    assert_eq!(
        listed.json()["data"].as_array().unwrap().len(),
        2,
        "{}",
        listed.body
    );

    // One request's answers share query.max_read_bytes.
    let small = TestProxy::start(&format!("{yaml}  max_read_bytes: 100\n"), &servers[0].url());
    let over = send(&small.url(), "GET", "/api/v1/series", "match[]=fanout_l", "");
    assert_eq!(over.status, 422, "{}", over.body);
    assert!(
        over.body
            .contains("its share of query.max_read_bytes (100) over 3 endpoints"),
        "{}",
        over.body
    );

    // storeMatch[]: by __address__ or external label.
    let address = |s: &Prometheus| s.url().trim_start_matches("http://").to_owned();
    let store = |selector: String| {
        let encoded: String = form_urlencoded::byte_serialize(selector.as_bytes()).collect();
        format!("&storeMatch[]={encoded}")
    };
    let only_a = store(format!("{{__address__=\"{}\"}}", address(&servers[0])));
    let only_b = store("{replica=\"b\"}".to_owned());
    assert_eq!(value(&count(&proxy, "fanout_only_a", t, &only_a)), "1");
    let from_b = count(&proxy, "fanout_only_a", t, &only_b);
    assert_eq!(
        from_b.json()["data"]["result"],
        serde_json::json!([]),
        "{}",
        from_b.body
    );
    let listed = send(
        &proxy.url(),
        "GET",
        "/api/v1/series",
        &format!("match[]=fanout_only_a{only_b}"),
        "",
    );
    assert_eq!(listed.json()["data"], serde_json::json!([]), "{}", listed.body);
    let bad = count(&proxy, "fanout_l", t, "&storeMatch[]=%7B");
    assert_eq!(
        (bad.status, bad.json()["errorType"].clone()),
        (400, "bad_data".into()),
        "{}",
        bad.body
    );

    // lookback_delta: the sample is 3 minutes old at `now`.
    assert_eq!(value(&count(&proxy, "fanout_l", now, "")), "1");
    let short = count(&proxy, "fanout_l", now, "&lookback_delta=1m");
    assert_eq!(
        short.json()["data"]["result"],
        serde_json::json!([]),
        "{}",
        short.body
    );
    let bad = count(&proxy, "fanout_l", now, "&lookback_delta=-1s");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("lookback_delta"), "{}", bad.body);

    // A stopped replica: the other answers for it, the answer is whole.
    servers[1].stop();
    let answer = count(&proxy, "fanout_l", t, "&partial_response=false");
    assert_eq!(value(&answer), "1");
    assert!(answer.json().get("warnings").is_none(), "{}", answer.body);
    assert_eq!(answer.cache_control, None);
    let listed = send(
        &proxy.url(),
        "GET",
        "/api/v1/series",
        &format!("match[]=fanout_l&partial_response=false{around_t}"),
        "",
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json()["data"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    assert!(listed.json().get("warnings").is_none(), "{}", listed.body);
    // Replica labels have no values; the other label's values come from the answering twin.
    let values = send(&proxy.url(), "GET", "/api/v1/label/replica/values", "", "");
    assert_eq!(values.json()["data"], serde_json::json!([]), "{}", values.body);
    // Both replicas stopped: the shard is missing and nothing is left to answer.
    servers[0].stop();
    let answer = count(&proxy, "fanout_l", t, "");
    assert_eq!(answer.status, 503, "{}", answer.body);
}
