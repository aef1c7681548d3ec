//! Remote write through the proxy into real Prometheus 2.42 servers: exact storage,
//! sharding, bad input, a downstream outage and a proxy crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::time::Duration;

use prost::Message;
use sketch_proxy::prompb::{Label, Opaque, TimeSeries, WriteRequest};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::TestProxy;
use support::write::{self, Stored};

fn prometheus() -> Prometheus {
    Prometheus::start(&PrometheusOptions::default()).expect("start Prometheus")
}

/// Proxy config with ingest on, queues in `dir`, and extra `ingest:` lines.
fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\n  min_backoff: 20ms\n  max_backoff: 500ms\n{extra}",
        dir.display()
    )
}

/// Two Prometheus shards, `a` and `b`, behind a proxy (queues in the returned directory).
fn two_shards() -> (tempfile::TempDir, Prometheus, Prometheus, TestProxy) {
    let (a, b) = (prometheus(), prometheus());
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "  destinations:\n    - url: {}/api/v1/write\n      name: a\n    - url: {}/api/v1/write\n      name: b\n",
        a.url(),
        b.url()
    );
    let proxy = TestProxy::start(&config(dir.path(), &extra), &a.url());
    (dir, a, b, proxy)
}

/// Waits until Prometheus holds exactly `expected` for `selector`.
fn wait_stored(prometheus: &Prometheus, selector: &str, expected: &Stored) {
    let mut last = Stored::new();
    let done = wait_until(Duration::from_secs(60), "the samples to reach Prometheus", || {
        last = write::stored(&prometheus.url(), selector, write::now_ms(), "3h");
        write::samples(&last) >= write::samples(expected)
    });
    assert!(
        done.is_ok(),
        "Prometheus holds {} of {} samples",
        write::samples(&last),
        write::samples(expected)
    );
    assert_eq!(&last, expected, "stored exactly what was sent");
}

/// Waits until Prometheus holds every sample of `acked` for `selector`. It may hold
/// more: a request the proxy fsynced just before it was killed is delivered although
/// its sender never saw the 204 (delivery is at least once).
fn wait_contains(prometheus: &Prometheus, selector: &str, acked: &Stored) {
    let mut missing = usize::MAX;
    let done = wait_until(
        Duration::from_secs(60),
        "the acknowledged samples to reach Prometheus",
        || {
            let stored = write::stored(&prometheus.url(), selector, write::now_ms(), "3h");
            missing = acked
                .iter()
                .map(|(labels, points)| {
                    let have = stored.get(labels).map(Vec::as_slice).unwrap_or_default();
                    points.iter().filter(|p| !have.contains(p)).count()
                })
                .sum();
            missing == 0
        },
    );
    assert!(
        done.is_ok(),
        "{missing} of {} acknowledged samples missing",
        write::samples(acked)
    );
}

#[test]
fn samples_written_through_the_proxy_are_stored_exactly() {
    let prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(&config(dir.path(), ""), &prometheus.url());
    let start = write::now_ms() - 3_000_000;
    let mut sent = Stored::new();
    // Batches of 12,000 samples: the sender splits them over its concurrent requests.
    for batch in 0..5 {
        let data = write::generate(
            "ingest_exact",
            200,
            60,
            start + batch * 600_000,
            10_000,
            batch as u64,
        );
        let answer = write::post(&proxy.url(), &data);
        assert_eq!((answer.status, answer.body.as_str()), (204, ""));
        write::extend(&mut sent, data);
    }
    wait_stored(&prometheus, "ingest_exact", &sent);
    let metrics = support::send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(
        metrics.contains(&format!(
            "sketch_proxy_remote_write_samples_received_total {}",
            write::samples(&sent)
        )),
        "{metrics}"
    );
}

#[test]
fn two_shards_each_get_whole_series_and_together_everything() {
    let (_dir, a, b, proxy) = two_shards();
    let data = write::generate("ingest_sharded", 200, 10, write::now_ms() - 600_000, 15_000, 7);
    assert_eq!(write::post(&proxy.url(), &data).status, 204);
    let mut union = Stored::new();
    let done = wait_until(
        Duration::from_secs(60),
        "both shards to hold their series",
        || {
            let now = write::now_ms();
            union = write::stored(&a.url(), "ingest_sharded", now, "1h");
            let on_b = write::stored(&b.url(), "ingest_sharded", now, "1h");
            let overlap = union.keys().filter(|k| on_b.contains_key(*k)).count();
            assert_eq!(overlap, 0, "a series is on one shard only");
            write::extend(&mut union, on_b);
            write::samples(&union) == write::samples(&data)
        },
    );
    assert!(
        done.is_ok(),
        "{} of {} samples arrived",
        write::samples(&union),
        write::samples(&data)
    );
    assert_eq!(union, data, "the shards together hold every series, whole");
    let on_a = write::stored(&a.url(), "ingest_sharded", write::now_ms(), "1h").len();
    assert!((60..=140).contains(&on_a), "{on_a} of 200 series on shard a");
}

/// (case, headers, body, status, a phrase the message must contain)
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, u16, &'a str);

#[test]
fn bad_requests_get_their_status_and_the_proxy_keeps_serving() {
    let prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let now = write::now_ms();
    // Far over the limit: the proxy reads it to the end before answering 413.
    let big = write::snappy(&write::encode(&write::generate(
        "ingest_big",
        2000,
        30,
        now,
        1,
        2,
    )));
    let limit = big.len() / 8;
    let proxy = TestProxy::start(
        &config(dir.path(), &format!("  max_body_bytes: {limit}\n")),
        &prometheus.url(),
    );
    let good = write::generate("ingest_bad", 2, 3, now - 60_000, 10_000, 1);
    let raw = write::encode(&good);
    let with_labels = |labels: &[(&str, &str)]| {
        let mut data = Stored::new();
        data.insert(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            vec![(now, 1.0)],
        );
        write::snappy(&write::encode(&data))
    };
    let future = {
        let mut data = Stored::new();
        data.insert(
            vec![("__name__".into(), "ingest_bad".into())],
            vec![(now + 3_600_000, 1.0)],
        );
        write::snappy(&write::encode(&data))
    };
    let histogram = {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "ingest_bad".into(),
                }],
                histograms: vec![Opaque {}],
                ..TimeSeries::default()
            }],
            metadata: Vec::new(),
        };
        write::snappy(&request.encode_to_vec())
    };
    let snappy = write::snappy(&raw);
    let headers = write::HEADERS;
    let gzip = [
        ("Content-Encoding", "gzip"),
        ("Content-Type", "application/x-protobuf"),
    ];
    let json = [
        ("Content-Encoding", "snappy"),
        ("Content-Type", "application/json"),
    ];
    let v2 = [
        ("Content-Encoding", "snappy"),
        (
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ),
    ];
    let cases: Vec<Case<'_>> = vec![
        (
            "gzip",
            &gzip,
            snappy.clone(),
            415,
            "Content-Encoding must be snappy",
        ),
        (
            "json",
            &json,
            snappy.clone(),
            415,
            "Content-Type must be application/x-protobuf",
        ),
        ("remote write 2.0", &v2, snappy.clone(), 415, "remote write 1.0"),
        ("not snappy", &headers, raw.clone(), 400, "snappy"),
        (
            "truncated snappy",
            &headers,
            snappy[..snappy.len() / 2].to_vec(),
            400,
            "snappy",
        ),
        (
            "bad protobuf",
            &headers,
            write::snappy(&raw[..raw.len() - 3]),
            400,
            "protobuf",
        ),
        (
            "empty labels",
            &headers,
            with_labels(&[("a", "")]),
            400,
            "empty label set",
        ),
        (
            "duplicate label",
            &headers,
            with_labels(&[("__name__", "ingest_bad"), ("a", "1"), ("a", "2")]),
            400,
            "ingest_bad{a=\"1\", a=\"2\"}: label name \"a\" is not unique",
        ),
        (
            "histogram",
            &headers,
            histogram,
            400,
            "native histograms are not supported",
        ),
        ("future", &headers, future, 400, "ingest.max_future"),
        ("over the body limit", &headers, big, 413, "ingest.max_body_bytes"),
    ];
    for (case, headers, body, status, phrase) in cases {
        let answer = write::post_with(&proxy.url(), headers, body);
        assert_eq!(answer.status, status, "{case}: {}", answer.body);
        let json = answer.json();
        assert_eq!(
            (&json["status"], &json["errorType"]),
            (&"error".into(), &"bad_data".into()),
            "{case}"
        );
        assert!(
            json["error"].as_str().unwrap().contains(phrase),
            "{case}: {}",
            answer.body
        );
        assert_eq!(
            write::post(&proxy.url(), &good).status,
            204,
            "after {case} the proxy still takes writes"
        );
    }
    let get = support::send(&proxy.url(), "GET", "/api/v1/write", "", "");
    assert_eq!(get.status, 405);
    wait_stored(&prometheus, "ingest_bad", &good);
}

/// Writes a batch of 20 samples stamped now every 50 ms for `duration`; returns what
/// was acknowledged. A refused connection (the proxy is down) is just not acked.
fn stream(proxy: &str, metric: &str, duration: Duration, seed: u64) -> Stored {
    let mut acked = Stored::new();
    let end = std::time::Instant::now() + duration;
    let mut batch = 0;
    while std::time::Instant::now() < end {
        let data = write::generate(metric, 20, 1, write::now_ms(), 1, seed * 1_000_000 + batch);
        batch += 1;
        let body = write::snappy(&write::encode(&data));
        let mut request = http::Request::post(format!("{proxy}/api/v1/write"));
        for (k, v) in write::HEADERS {
            request = request.header(k, v);
        }
        let sent = sketch_proxy_testkit::http_agent().run(request.body(body).unwrap());
        if sent.is_ok_and(|r| r.status() == 204) {
            write::extend(&mut acked, data);
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    acked
}

#[test]
fn acknowledged_samples_survive_a_thirty_second_downstream_outage() {
    let mut prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(&config(dir.path(), ""), &prometheus.url());
    let mut acked = stream(&proxy.url(), "ingest_outage", Duration::from_secs(2), 1);
    prometheus.stop();
    write::extend(
        &mut acked,
        stream(&proxy.url(), "ingest_outage", Duration::from_secs(30), 2),
    );
    prometheus.restart().unwrap();
    write::extend(
        &mut acked,
        stream(&proxy.url(), "ingest_outage", Duration::from_secs(2), 3),
    );
    assert!(
        write::samples(&acked) > 5000,
        "the stream kept being acknowledged during the outage"
    );
    wait_stored(&prometheus, "ingest_outage", &acked);
}

#[test]
fn queued_samples_survive_a_proxy_crash() {
    let mut prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sketch-proxy.yml");
    std::fs::write(&file, config(&dir.path().join("queue"), "")).unwrap();
    let port = sketch_proxy_testkit::free_port().unwrap();
    let args = [
        format!("--config={}", file.display()),
        format!("--upstream={}", prometheus.url()),
    ];
    let (proxy, url) = support::start_binary_on(port, &args);
    let mut acked = stream(&url, "ingest_crash", Duration::from_secs(1), 1);
    // With the downstream gone, acknowledged samples pile up in the queue only.
    prometheus.stop();
    let streaming = {
        let url = url.clone();
        std::thread::spawn(move || stream(&url, "ingest_crash", Duration::from_secs(4), 2))
    };
    std::thread::park_timeout(Duration::from_secs(2));
    drop(proxy); // SIGKILL, mid-stream
    let (_proxy, _) = support::start_binary_on(port, &args);
    write::extend(&mut acked, streaming.join().unwrap());
    prometheus.restart().unwrap();
    write::extend(
        &mut acked,
        stream(&url, "ingest_crash", Duration::from_secs(1), 3),
    );
    wait_contains(&prometheus, "ingest_crash", &acked);
}

#[test]
fn a_full_queue_answers_503_until_the_destination_drains_it() {
    let mut prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(
        &config(dir.path(), "  max_queue_bytes: 1048576\n"),
        &prometheus.url(),
    );
    prometheus.stop();
    let mut acked = Stored::new();
    let mut refused = None;
    for batch in 0..200 {
        let data = write::generate(
            "ingest_full",
            100,
            20,
            write::now_ms() - 600_000 + batch * 20,
            1,
            batch as u64,
        );
        let answer = write::post(&proxy.url(), &data);
        match answer.status {
            204 => write::extend(&mut acked, data),
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("the queue fills up");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["errorType"], "unavailable");
    assert!(
        refused.body.contains("ingest.max_queue_bytes"),
        "{}",
        refused.body
    );
    prometheus.restart().unwrap();
    wait_stored(&prometheus, "ingest_full", &acked);
    let more = write::generate("ingest_full_after", 1, 1, write::now_ms(), 1, 9);
    assert_eq!(
        write::post(&proxy.url(), &more).status,
        204,
        "drained, the queue takes writes again"
    );
}

#[test]
fn samples_the_destination_refuses_are_counted_and_the_queue_moves_on() {
    let prometheus = prometheus();
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(&config(dir.path(), ""), &prometheus.url());
    let now = write::now_ms();
    let first = write::generate("ingest_refused", 1, 1, now, 1, 1);
    assert_eq!(write::post(&proxy.url(), &first).status, 204);
    wait_stored(&prometheus, "ingest_refused", &first);
    // Older than what Prometheus holds for the series: 400 "out of order sample".
    let older = write::generate("ingest_refused", 1, 1, now - 60_000, 1, 2);
    assert_eq!(
        write::post(&proxy.url(), &older).status,
        204,
        "the proxy cannot know; it queues"
    );
    let later = write::generate("ingest_refused", 1, 1, now + 1000, 1, 3);
    assert_eq!(write::post(&proxy.url(), &later).status, 204);
    let mut expected = first.clone();
    write::extend(&mut expected, later);
    wait_stored(&prometheus, "ingest_refused", &expected);
    let metrics = support::send(&proxy.url(), "GET", "/metrics", "", "").body;
    let failed = format!(
        "sketch_proxy_remote_write_samples_failed_total{{destination=\"{}\",reason=\"out of order sample\"}} 1\n",
        prometheus.url().trim_start_matches("http://")
    );
    assert!(metrics.contains(&failed), "{metrics}");
}

#[test]
fn stale_markers_stay_stale_markers_on_every_path() {
    // Two shards, so requests are split and re-encoded rather than passed through.
    let (_dir, a, b, proxy) = two_shards();
    let t = write::now_ms() - 600_000;
    let stale = f64::from_bits(sketch_proxy::prompb::STALE_NAN_BITS);
    let mut data = Stored::new();
    for i in 0..20 {
        data.insert(
            vec![
                ("__name__".into(), "ingest_stale".into()),
                ("i".into(), i.to_string()),
            ],
            vec![(t, 1.0), (t + 10_000, 2.0), (t + 20_000, stale)],
        );
    }
    assert_eq!(write::post(&proxy.url(), &data).status, 204);
    // A marker ends the series at once; a plain NaN would be returned for 5 minutes.
    let instant = |p: &Prometheus, at: i64| {
        write::stored(&p.url(), "ingest_stale", at, "1m")
            .values()
            .map(Vec::len)
            .sum::<usize>()
    };
    let done = wait_until(Duration::from_secs(60), "the samples to arrive", || {
        instant(&a, t + 15_000) + instant(&b, t + 15_000) == 2 * 20
    });
    assert!(done.is_ok());
    let last_value = |p: &Prometheus, at: i64| {
        let url = format!(
            "{}/api/v1/query?query=ingest_stale&time={}",
            p.url(),
            at as f64 / 1000.0
        );
        let mut response = sketch_proxy_testkit::http_agent().get(&url).call().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        json["data"]["result"].as_array().unwrap().len()
    };
    assert_eq!(
        last_value(&a, t + 15_000) + last_value(&b, t + 15_000),
        20,
        "live before the marker"
    );
    assert_eq!(
        last_value(&a, t + 25_000) + last_value(&b, t + 25_000),
        0,
        "stale right after it"
    );
}
