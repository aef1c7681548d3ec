//! Reads over several endpoints (issue 8, first part): external labels pick the
//! endpoints a query asks and label their series; series, labels and label values over
//! two shards answer as one Prometheus holding everything; read endpoints not merged
//! yet say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::write::{self, Stored};
use support::{TestProxy, instant, send};

/// `n` Prometheus servers.
fn servers(n: usize) -> Vec<Prometheus> {
    (0..n)
        .map(|_| Prometheus::start(&PrometheusOptions::default()).unwrap())
        .collect()
}

/// `downstream.endpoints` listing `servers`, without external labels.
fn endpoints(servers: &[Prometheus]) -> String {
    let list: String = servers
        .iter()
        .map(|p| format!("    - url: {}\n", p.url()))
        .collect();
    format!("downstream:\n  endpoints:\n{list}")
}

/// Samples of series `metric` that `prometheus` holds in the 2 h up to `end`.
fn held(prometheus: &Prometheus, metric: &str, end: i64) -> usize {
    write::samples(&write::stored(&prometheus.url(), metric, end, "2h"))
}

/// Polls until the two `shards` together hold every sample of `data` (series named
/// `metric`, the newest at `end`).
fn wait_for_shards_to_hold(shards: &[Prometheus], metric: &str, end: i64, data: &Stored) {
    sketch_proxy_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the shards to hold every sample",
        || held(&shards[0], metric, end) + held(&shards[1], metric, end) == write::samples(data),
    )
    .unwrap();
}

#[test]
fn external_labels_pick_and_label_the_endpoints_asked() {
    let shards = servers(2);
    let t = write::now_ms() - 60_000;
    for (i, shard) in shards.iter().enumerate() {
        let data: Stored = (0..=i)
            .map(|j| {
                let labels = vec![
                    ("__name__".to_owned(), "fanout_m".to_owned()),
                    ("instance".to_owned(), format!("host-{j}")),
                ];
                (labels, vec![(t, (i * 10 + j) as f64)])
            })
            .collect();
        assert_eq!(write::post(&shard.url(), &data).status, 204);
    }
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n      external_labels: {{shard: a}}\n    - url: {}\n      external_labels: {{shard: b}}\n",
        shards[0].url(),
        shards[1].url()
    );
    let proxy = TestProxy::start(&yaml, &shards[0].url());
    // (query, answer as sorted "labels=value" lines, shard B asked)
    let cases: &[(&str, &[&str])] = &[
        (
            "fanout_m",
            &[
                r#"{"__name__":"fanout_m","instance":"host-0","shard":"a"}=0"#,
                r#"{"__name__":"fanout_m","instance":"host-0","shard":"b"}=10"#,
                r#"{"__name__":"fanout_m","instance":"host-1","shard":"b"}=11"#,
            ],
        ),
        (
            r#"fanout_m{shard="b"}"#,
            &[
                r#"{"__name__":"fanout_m","instance":"host-0","shard":"b"}=10"#,
                r#"{"__name__":"fanout_m","instance":"host-1","shard":"b"}=11"#,
            ],
        ),
        (r#"sum(fanout_m{shard!="b"})"#, &[r#"{}=0"#]),
        (r#"count(fanout_m{shard=~"a|b"})"#, &[r#"{}=3"#]),
    ];
    for (query, want) in cases {
        let reads_b = shards[1].requests_served("/api/v1/read").unwrap();
        let answer = instant(&proxy.url(), query, t, "");
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        assert_eq!(answer.path.as_deref(), Some("engine"), "{query}");
        let mut got: Vec<String> = answer.json()["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{}={}", s["metric"], s["value"][1].as_str().unwrap()))
            .collect();
        got.sort();
        assert_eq!(got, *want, "{query}");
        let asked_b = shards[1].requests_served("/api/v1/read").unwrap() > reads_b;
        assert_eq!(
            asked_b,
            !query.contains(r#"shard!="b""#),
            "{query}: shard b asked"
        );
    }
    // Series carry their endpoint's external labels.
    let series = send(&proxy.url(), "GET", "/api/v1/series", "match[]=fanout_m", "");
    assert_eq!(
        series.body,
        r#"{"status":"success","data":[{"__name__":"fanout_m","instance":"host-0","shard":"a"},{"__name__":"fanout_m","instance":"host-0","shard":"b"},{"__name__":"fanout_m","instance":"host-1","shard":"b"}]}"#
    );
    // match[] on external labels is checked in the proxy, for series, label names and
    // values: (path, query, data).
    let cases = [
        (
            "/api/v1/series",
            "match[]=fanout_m%7Bshard%3D%22a%22%7D",
            r#"[{"__name__":"fanout_m","instance":"host-0","shard":"a"}]"#,
        ),
        (
            "/api/v1/series",
            "match[]=%7Bshard%3D%22b%22%7D",
            r#"[{"__name__":"fanout_m","instance":"host-0","shard":"b"},{"__name__":"fanout_m","instance":"host-1","shard":"b"}]"#,
        ),
        ("/api/v1/series", "match[]=%7Bshard%3D%22c%22%7D", "[]"),
        (
            "/api/v1/label/instance/values",
            "match[]=%7Bshard%3D%22a%22%7D",
            r#"["host-0"]"#,
        ),
        // An external label's values: those of the endpoints with a selected series.
        (
            "/api/v1/label/shard/values",
            "match[]=fanout_m%7Binstance%3D%22host-1%22%7D",
            r#"["b"]"#,
        ),
        ("/api/v1/label/shard/values", "", r#"["a","b"]"#),
        ("/api/v1/label/shard/values", "match[]=nothing_here", "[]"),
        (
            "/api/v1/labels",
            "match[]=%7Bshard%3D~%22b%22%2Cinstance%3D%22host-1%22%7D",
            r#"["__name__","instance","shard"]"#,
        ),
    ];
    for (path, query, data) in cases {
        // Prometheus gzips for clients that accept it; the proxy reads those answers and
        // gzips its merge in turn (the test client decompresses).
        let answer = support::send_with(
            &proxy.url(),
            "GET",
            path,
            query,
            "",
            &[("Accept-Encoding", "gzip")],
        );
        assert_eq!(answer.status, 200, "{path}?{query}: {}", answer.body);
        assert_eq!(answer.json()["data"].to_string(), data, "{path}?{query}");
        // The same as a form POST (label values are GET only).
        if !path.ends_with("/values") {
            let posted = send(&proxy.url(), "POST", path, "", query);
            assert_eq!(posted.body, answer.body, "POST {path} {query}");
        }
    }
    // A path that describes one server: an error in Prometheus' form, not one shard's
    // answer.
    let answer = send(&proxy.url(), "GET", "/api/v1/targets", "", "");
    assert_eq!(answer.status, 501, "{}", answer.body);
    assert_eq!(answer.json()["errorType"], "unavailable");
}

#[test]
fn series_labels_and_values_over_two_shards_equal_one_prometheus_holding_everything() {
    let servers = servers(3);
    let (shards, whole) = (&servers[..2], &servers[2]);
    let t = write::now_ms() - 60_000;
    let data: Stored = (0..12)
        .map(|j| {
            let labels = vec![
                ("__name__".to_owned(), format!("fanout_{}", j % 3)),
                ("instance".to_owned(), format!("host-{j}")),
                ("job".to_owned(), if j % 2 == 0 { "api" } else { "db" }.to_owned()),
            ];
            (labels, vec![(t, j as f64)])
        })
        .collect();
    assert_eq!(write::post(&whole.url(), &data).status, 204);
    for (i, shard) in shards.iter().enumerate() {
        let part: Stored = data
            .iter()
            .enumerate()
            .filter(|(j, _)| j % 2 == i)
            .map(|(_, (k, v))| (k.clone(), v.clone()))
            .collect();
        assert_eq!(write::post(&shard.url(), &part).status, 204);
    }
    let yaml = endpoints(shards);
    let proxy = TestProxy::start(&yaml, &shards[0].url());
    let (from, to) = ((t - 600_000) / 1000, (t + 600_000) / 1000);
    let requests = [
        (
            "/api/v1/series",
            format!("match[]=%7B__name__%3D~%22fanout_.%2A%22%7D&start={from}&end={to}"),
        ),
        (
            "/api/v1/series",
            format!("match[]=fanout_1&match[]=%7Bjob%3D%22api%22%7D&start={from}&end={to}"),
        ),
        ("/api/v1/labels", String::new()),
        ("/api/v1/labels", "match[]=fanout_2".to_owned()),
        ("/api/v1/label/instance/values", String::new()),
        ("/api/v1/label/__name__/values", format!("start={from}&end={to}")),
        ("/api/v1/label/job/values", "match[]=fanout_0".to_owned()),
    ];
    for (path, query) in requests {
        let merged = send(&proxy.url(), "GET", path, &query, "");
        let one = send(&whole.url(), "GET", path, &query, "");
        assert_eq!(merged.status, 200, "{path}?{query}: {}", merged.body);
        assert_eq!(merged.body, one.body, "{path}?{query}");
        assert!(
            !merged.body.contains(r#""data":[]"#),
            "{path}?{query}: something to compare"
        );
    }
}

#[test]
fn a_stopped_shard_gives_a_partial_answer_with_a_warning_and_comes_back() {
    let mut shards = servers(2);
    let t = write::now_ms() - 60_000;
    for (i, shard) in shards.iter().enumerate() {
        let data: Stored = (0..3 + i)
            .map(|j| {
                let labels = vec![
                    ("__name__".to_owned(), "fanout_d".to_owned()),
                    ("instance".to_owned(), format!("shard-{i}-host-{j}")),
                ];
                (labels, vec![(t, 1.0)])
            })
            .collect();
        assert_eq!(write::post(&shard.url(), &data).status, 204);
    }
    // Without the results cache: it would answer the whole count kept from before.
    let yaml = format!("{}cache:\n  enabled: false\n", endpoints(&shards));
    let proxy = TestProxy::start(&yaml, &shards[0].url());
    let count = |extra: &str| instant(&proxy.url(), "count(fanout_d)", t, extra);
    let value = |answer: &support::Answer| answer.json()["data"]["result"][0]["value"][1].clone();
    let whole = count("");
    assert_eq!(value(&whole), "7");
    assert!(whole.json().get("warnings").is_none());

    shards[1].stop();
    let partial = count("");
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert_eq!(value(&partial), "3", "shard 0's series only, never a wrong total");
    let warning = partial.json()["warnings"][0].as_str().unwrap().to_owned();
    assert!(warning.contains(&shards[1].url()), "{warning}");
    assert_eq!(partial.cache_control.as_deref(), Some("no-store"));
    let refused = count("&partial_response=false");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["errorType"], "unavailable");
    let series = send(&proxy.url(), "GET", "/api/v1/series", "match[]=fanout_d", "");
    assert_eq!(series.status, 200, "{}", series.body);
    assert_eq!(series.json()["data"].as_array().unwrap().len(), 3);
    assert!(
        series.json()["warnings"][0]
            .as_str()
            .unwrap()
            .contains(&shards[1].url())
    );
    assert_eq!(series.cache_control.as_deref(), Some("no-store"));
    // Every merged read endpoint: partial with the warning, or failing when asked to.
    let paths = [
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/labels",
        "/api/v1/metadata",
        "/api/v1/query_exemplars",
    ];
    for path in paths {
        let query = "query=fanout_d&start=0&end=1";
        let answer = send(&proxy.url(), "GET", path, query, "");
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let warning = answer.json()["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(warning.contains(&shards[1].url()), "{path}: {}", answer.body);
        assert_eq!(answer.cache_control.as_deref(), Some("no-store"), "{path}");
        let refused = send(
            &proxy.url(),
            "GET",
            path,
            &format!("{query}&partial_response=false"),
            "",
        );
        assert_eq!(refused.status, 503, "{path}: {}", refused.body);
    }
    // Health: ready while one endpoint is, each listed; the metric says which is down.
    let ready = send(&proxy.url(), "GET", "/-/ready", "", "");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains(&format!("{}: not ready", shards[1].url())),
        "{}",
        ready.body
    );
    assert!(
        ready.body.contains(&format!("{}: ready", shards[0].url())),
        "{}",
        ready.body
    );
    let up = |shard: &Prometheus| format!("sketch_proxy_endpoint_up{{endpoint=\"{}\"}}", shard.url());
    let metrics = send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(metrics.contains(&format!("{} 0", up(&shards[1]))), "{metrics}");
    assert!(metrics.contains(&format!("{} 1", up(&shards[0]))), "{metrics}");

    shards[1].restart().unwrap();
    // Its data again, whatever its WAL kept of the crash.
    let data: Stored = (0..4)
        .map(|j| {
            let labels = vec![
                ("__name__".to_owned(), "fanout_d".to_owned()),
                ("instance".to_owned(), format!("shard-1-host-{j}")),
            ];
            (labels, vec![(t, 1.0)])
        })
        .collect();
    assert_eq!(write::post(&shards[1].url(), &data).status, 204);
    let again = count("");
    assert_eq!(value(&again), "7", "whole again without a restart of the proxy");
    assert!(again.json().get("warnings").is_none());
    let metrics = send(&proxy.url(), "GET", "/metrics", "", "").body;
    assert!(metrics.contains(&format!("{} 1", up(&shards[1]))), "{metrics}");
}

#[test]
fn samples_written_through_the_proxy_over_two_shards_are_read_back_once() {
    let shards = servers(2);
    let dir = tempfile::tempdir().unwrap();
    // One list of endpoints: reads fan out over it, writes shard over it.
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\n{}",
        dir.path().display(),
        endpoints(&shards)
    );
    let proxy = TestProxy::start(&yaml, &shards[0].url());
    let start = (write::now_ms() - 1_800_000) / 1000 * 1000;
    let data = write::generate("fanout_written", 20, 60, start, 10_000, 5);
    assert_eq!(write::post(&proxy.url(), &data).status, 204);
    let end = start + 59 * 10_000;
    wait_for_shards_to_hold(&shards, "fanout_written", end, &data);
    assert!(
        held(&shards[0], "fanout_written", end) > 0 && held(&shards[1], "fanout_written", end) > 0,
        "series spread over both shards"
    );
    // Through the proxy: every series once, every sample once.
    let read = write::stored(&proxy.url(), "fanout_written", end, "1h");
    assert_eq!(read, data);
}

#[test]
fn metadata_over_two_endpoints_is_their_union() {
    // Shard A scrapes shard B's own metrics every second: it holds their metadata, B
    // none. The union is A's answer.
    let b = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let scrape = format!(
        "  - job_name: b\n    scrape_interval: 1s\n    static_configs: [{{targets: ['{}']}}]\n",
        b.url().trim_start_matches("http://")
    );
    let a = Prometheus::start(&PrometheusOptions {
        scrape_configs: Some(scrape),
        ..PrometheusOptions::default()
    })
    .unwrap();
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n    - url: {}\n",
        a.url(),
        b.url()
    );
    let proxy = TestProxy::start(&yaml, &a.url());
    sketch_proxy_testkit::wait_until(std::time::Duration::from_secs(60), "a scrape", || {
        let json = send(&a.url(), "GET", "/api/v1/metadata", "", "").json();
        json["data"].as_object().is_some_and(|m| m.len() > 10)
    })
    .unwrap();
    for query in ["metric=prometheus_build_info", "metric=go_goroutines"] {
        let merged = send(&proxy.url(), "GET", "/api/v1/metadata", query, "");
        let direct = send(&a.url(), "GET", "/api/v1/metadata", query, "");
        assert_eq!(merged.status, 200, "{}", merged.body);
        assert_eq!(merged.body, direct.body, "{query}");
        assert!(merged.body.contains("\"type\":\"gauge\""), "{}", merged.body);
    }
    let limited = send(&proxy.url(), "GET", "/api/v1/metadata", "limit=3", "");
    assert_eq!(limited.json()["data"].as_object().unwrap().len(), 3);
}

#[test]
fn requests_choose_the_replica_labels_or_no_dedup() {
    let replicas = servers(2);
    let t = write::now_ms() - 60_000;
    for (r, replica) in replicas.iter().enumerate() {
        let data: Stored = (0..3)
            .map(|j| {
                let labels = vec![
                    ("__name__".to_owned(), "fanout_r".to_owned()),
                    ("instance".to_owned(), format!("host-{j}")),
                    ("replica".to_owned(), format!("r{r}")),
                ];
                (labels, vec![(t, 1.0)])
            })
            .collect();
        assert_eq!(write::post(&replica.url(), &data).status, 204);
    }
    let yaml = format!("{}query:\n  replica_labels: [replica]\n", endpoints(&replicas));
    let proxy = TestProxy::start(&yaml, &replicas[0].url());
    // (extra parameters, series counted)
    let cases = [
        ("", "3"),
        ("&dedup=false", "6"),
        ("&dedup=true", "3"),
        ("&replicaLabels[]=zone", "6"),
        ("&replicaLabels[]=replica", "3"),
    ];
    for (extra, want) in cases {
        let answer = instant(&proxy.url(), "count(fanout_r)", t, extra);
        assert_eq!(answer.status, 200, "{extra}: {}", answer.body);
        assert_eq!(answer.json()["data"]["result"][0]["value"][1], want, "{extra}");
        // The same choice for the series endpoint.
        let series = send(
            &proxy.url(),
            "GET",
            "/api/v1/series",
            &format!("match[]=fanout_r{extra}"),
            "",
        );
        let n = series.json()["data"].as_array().unwrap().len();
        assert_eq!(n.to_string(), want, "series{extra}: {}", series.body);
    }
}

#[test]
fn sketch_served_queries_answer_the_same_over_two_shards() {
    let shards = servers(2);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\n{}\
         sketches:\n  rules:\n    - match: fanout_sketched\n      functions: [quantile_over_time, distinct_over_time]\n      retain: 3h\n",
        dir.path().display(),
        endpoints(&shards)
    );
    let proxy = TestProxy::start(&yaml, &shards[0].url());
    let start = (write::now_ms() - 3_600_000) / 1000 * 1000;
    let data = write::generate("fanout_sketched", 6, 360, start, 10_000, 9);
    for part in 0..2 {
        let half: Stored = data
            .iter()
            .map(|(k, v)| (k.clone(), v[part * 180..(part + 1) * 180].to_vec()))
            .collect();
        assert_eq!(write::post(&proxy.url(), &half).status, 204);
    }
    let end = start + 359 * 10_000;
    wait_for_shards_to_hold(&shards, "fanout_sketched", end, &data);
    sketch_proxy_testkit::wait_until(std::time::Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    for query in [
        "quantile_over_time(0.9, fanout_sketched[30m])",
        "sum(distinct_over_time(fanout_sketched[30m]))",
    ] {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let params = format!(
            "query={q}&start={}&end={}&step=60",
            (start + 1_800_000) as f64 / 1000.0,
            end as f64 / 1000.0
        );
        let sketched = send(&proxy.url(), "GET", "/api/v1/query_range", &params, "");
        let exact = send(
            &proxy.url(),
            "GET",
            "/api/v1/query_range",
            &format!("{params}&sketch=off"),
            "",
        );
        assert_eq!(
            sketched.path.as_deref(),
            Some("sketch"),
            "{query}: {}",
            sketched.body
        );
        assert_eq!(exact.path.as_deref(), Some("engine"), "{query}");
        // 30-minute windows hold 181 samples: the plugins answer exactly.
        assert_same_points(query, &sketched, &exact);
    }
}

/// Both range answers hold the same series and steps, values within 1e-9 relative.
fn assert_same_points(query: &str, got: &support::Answer, want: &support::Answer) {
    let (got, want) = (got.range_values(), want.range_values());
    assert!(!want.is_empty(), "{query}");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{query}"
    );
    for (key, w) in &want {
        let g = got[key];
        assert!(
            (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            "{query} {key:?}: {g} vs {w}"
        );
    }
}

#[test]
fn one_endpoint_with_external_labels_is_read_as_a_thanos_store() {
    let server = servers(1);
    let t = write::now_ms() - 60_000;
    let labels = vec![
        ("__name__".to_owned(), "fanout_one".to_owned()),
        ("instance".to_owned(), "host-0".to_owned()),
    ];
    let data: Stored = [(labels, vec![(t, 4.0)])].into_iter().collect();
    assert_eq!(write::post(&server[0].url(), &data).status, 204);
    let yaml = format!(
        "downstream:\n  endpoints:\n    - url: {}\n      external_labels: {{cluster: eu}}\n",
        server[0].url()
    );
    let proxy = TestProxy::start(&yaml, &server[0].url());
    // (query, result)
    let cases = [
        (
            "fanout_one",
            r#"[{"metric":{"__name__":"fanout_one","cluster":"eu","instance":"host-0"},"value":[AT,"4"]}]"#,
        ),
        (
            "sum by (cluster) (fanout_one)",
            r#"[{"metric":{"cluster":"eu"},"value":[AT,"4"]}]"#,
        ),
        ("fanout_one{cluster=\"us\"}", "[]"),
    ];
    for (query, want) in cases {
        let answer = instant(&proxy.url(), query, t, "");
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        let want = want.replace("AT", &answer.json()["data"]["result"][0]["value"][0].to_string());
        assert_eq!(answer.json()["data"]["result"].to_string(), want, "{query}");
    }
    let series = send(
        &proxy.url(),
        "GET",
        "/api/v1/series",
        "match[]=%7Bcluster%3D%22eu%22%7D",
        "",
    );
    assert_eq!(
        series.json()["data"].to_string(),
        r#"[{"__name__":"fanout_one","cluster":"eu","instance":"host-0"}]"#,
        "{}",
        series.body
    );
}

/// Push-down (issue 20): over two shards holding disjoint series, with
/// `query.push_down`, the parts of a query each endpoint can answer alone are sent to
/// it and merged; the answers equal those computed from all the raw data in the
/// proxy, and `X-Pushed-Down` says what went where.
#[test]
fn pushed_down_parts_answer_as_the_raw_data_does() {
    let shards = servers(2);
    let end = write::now_ms() / 1000 * 1000 - 60_000;
    let mut all = Stored::new();
    for (i, shard) in shards.iter().enumerate() {
        let data: Stored = (0..4)
            .map(|j| {
                let labels = vec![
                    ("__name__".to_owned(), "pd_m".to_owned()),
                    ("job".to_owned(), format!("job-{}", j % 2)),
                    ("instance".to_owned(), format!("host-{i}-{j}")),
                ];
                let points = (0..60)
                    .map(|n| {
                        let t = end - (59 - n) * 15_000;
                        let v = (n as f64 * (1.0 + (i * 4 + j) as f64)).sin() * 10.0
                            + (n * (j as i64 + 1)) as f64;
                        (t, v)
                    })
                    .collect();
                (labels, points)
            })
            .collect();
        assert_eq!(write::post(&shard.url(), &data).status, 204);
        all.extend(data);
    }
    wait_for_shards_to_hold(&shards, "pd_m", end, &all);
    let yaml = |push: bool| {
        format!(
            "downstream:\n  endpoints:\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: a}}\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: b}}\nquery:\n  push_down: {push}\ncache:\n  enabled: false\n",
            shards[0].url(),
            shards[1].url()
        )
    };
    let pushing = TestProxy::start(&yaml(true), &shards[0].url());
    let reading = TestProxy::start(&yaml(false), &shards[0].url());
    let window = (end - 600_000, end, 30_000);
    // (query, what is pushed, to both shards)
    let cases = [
        (
            "sum by (job) (rate(pd_m[2m]))",
            Some("sum by (job) (rate(pd_m[2m]))"),
        ),
        ("avg(pd_m)", Some("avg(pd_m)")),
        ("stddev by (job) (pd_m)", Some("stddev by (job) (pd_m)")),
        ("topk(3, pd_m)", Some("topk(3, pd_m)")),
        ("max by (shard) (pd_m)", Some("max by (shard) (pd_m)")),
        ("count(pd_m > 5)", Some("count(pd_m > 5)")),
        ("quantile(0.5, pd_m)", Some("pd_m")),
        ("pd_m * 2", Some("pd_m * 2")),
        // A matcher on an external label: read as raw data.
        ("sum(pd_m{shard=\"a\"})", None),
    ];
    for (query, part) in cases {
        let pushed = support::range_query(&pushing.url(), query, window, "");
        let read = support::range_query(&reading.url(), query, window, "");
        assert_eq!(pushed.status, 200, "{query}: {}", pushed.body);
        assert_same_points(query, &pushed, &read);
        let expected = part.map(|p| format!("{p} @ {} {}", shards[0].url(), shards[1].url()));
        assert_eq!(pushed.pushed, expected, "{query}");
        assert_eq!(read.pushed, None, "{query}");
    }
}

/// Push-down over a replica pair and a shard: one replica per shard is asked (so the
/// pair's series count once), the next when one fails (here the first listed is down),
/// and the answer is whole, equal to the raw data's.
#[test]
fn pushed_down_parts_ask_one_replica_per_shard() {
    let servers = servers(3);
    let end = write::now_ms() / 1000 * 1000 - 60_000;
    let data = |shard: usize| -> Stored {
        (0..3)
            .map(|j| {
                let labels = vec![
                    ("__name__".to_owned(), "pr_m".to_owned()),
                    ("instance".to_owned(), format!("host-{shard}-{j}")),
                ];
                let points = (0..40)
                    .map(|n| {
                        (
                            end - (39 - n) * 15_000,
                            (n * (j as i64 + 1) + shard as i64 * 100) as f64,
                        )
                    })
                    .collect();
                (labels, points)
            })
            .collect()
    };
    // Servers 0 and 1 are replicas of shard a; server 2 is shard b.
    for (server, shard) in servers.iter().zip([0, 0, 1]) {
        assert_eq!(write::post(&server.url(), &data(shard)).status, 204);
    }
    for (server, shard) in servers.iter().zip([0, 0, 1]) {
        sketch_proxy_testkit::wait_until(
            std::time::Duration::from_secs(60),
            "each server to hold its data",
            || held(server, "pr_m", end) == write::samples(&data(shard)),
        )
        .unwrap();
    }
    let yaml = |push: bool| {
        format!(
            "downstream:\n  endpoints:\n    - url: http://127.0.0.1:1\n      kind: query_api\n      external_labels: {{shard: a, replica: r9}}\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: a, replica: r0}}\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: a, replica: r1}}\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: b}}\nquery:\n  push_down: {push}\n  replica_labels: [replica]\ncache:\n  enabled: false\n",
            servers[0].url(),
            servers[1].url(),
            servers[2].url()
        )
    };
    let pushing = TestProxy::start(&yaml(true), &servers[0].url());
    let reading = TestProxy::start(&yaml(false), &servers[0].url());
    let window = (end - 300_000, end, 30_000);
    for query in ["sum by (shard) (pr_m)", "count(pr_m)", "pr_m * 2"] {
        let pushed = support::range_query(&pushing.url(), query, window, "");
        let read = support::range_query(&reading.url(), query, window, "");
        assert_eq!(pushed.status, 200, "{query}: {}", pushed.body);
        assert_eq!(
            pushed.json()["warnings"],
            serde_json::Value::Null,
            "{query}: whole"
        );
        assert_same_points(query, &pushed, &read);
        let expected = format!("{query} @ {} {}", servers[0].url(), servers[2].url());
        assert_eq!(pushed.pushed.as_deref(), Some(expected.as_str()), "{query}");
    }
}

/// Push-down with a shard down: the answer is partial, with the warning and
/// `Cache-Control: no-store` that reading raw data gives; with `partial_response=false`
/// it fails as reading raw data does.
#[test]
fn a_pushed_down_query_with_a_shard_down_is_partial_or_fails() {
    let servers = servers(1);
    let end = write::now_ms() / 1000 * 1000 - 60_000;
    let data: Stored = (0..3)
        .map(|j| {
            let labels = vec![
                ("__name__".to_owned(), "pp_m".to_owned()),
                ("instance".to_owned(), format!("host-{j}")),
            ];
            (
                labels,
                (0..20)
                    .map(|n| (end - (19 - n) * 15_000, (n + j) as f64))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(write::post(&servers[0].url(), &data).status, 204);
    sketch_proxy_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the shard to hold its data",
        || held(&servers[0], "pp_m", end) == write::samples(&data),
    )
    .unwrap();
    let yaml = |push: bool| {
        format!(
            "downstream:\n  endpoints:\n    - url: {}\n      kind: query_api\n      external_labels: {{shard: a}}\n    - url: http://127.0.0.1:1\n      kind: query_api\n      external_labels: {{shard: b}}\nquery:\n  push_down: {push}\ncache:\n  enabled: false\n",
            servers[0].url()
        )
    };
    let pushing = TestProxy::start(&yaml(true), &servers[0].url());
    let reading = TestProxy::start(&yaml(false), &servers[0].url());
    let window = (end - 120_000, end, 30_000);
    let query = "sum(pp_m)";
    let pushed = support::range_query(&pushing.url(), query, window, "");
    let read = support::range_query(&reading.url(), query, window, "");
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_same_points(query, &pushed, &read);
    // The same warning, but for the path asked (query_range rather than query).
    let warnings = |a: &support::Answer| {
        a.json()["warnings"]
            .to_string()
            .replace("/api/v1/query_range:", "/api/v1/query:")
    };
    assert_eq!(warnings(&pushed), warnings(&read));
    assert!(
        warnings(&pushed).contains("endpoint http://127.0.0.1:1 ("),
        "{}",
        pushed.body
    );
    assert_eq!(pushed.cache_control.as_deref(), Some("no-store"));
    assert_eq!(pushed.pushed, Some(format!("{query} @ {}", servers[0].url())));
    let strict = "&partial_response=false";
    let (pushed, read) = (
        support::range_query(&pushing.url(), query, window, strict),
        support::range_query(&reading.url(), query, window, strict),
    );
    assert_ne!(read.status, 200, "{}", read.body);
    assert_eq!(
        (pushed.status, pushed.json()["errorType"].clone()),
        (read.status, read.json()["errorType"].clone()),
        "{} vs {}",
        pushed.body,
        read.body
    );
}
