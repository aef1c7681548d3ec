//! Reads over several endpoints (issue 8, first part): external labels pick the
//! endpoints a query asks and label their series; read endpoints not merged yet say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::write::{self, Stored};
use support::{TestProxy, send};

#[test]
fn external_labels_pick_and_label_the_endpoints_asked() {
    let shards: Vec<Prometheus> = (0..2)
        .map(|_| Prometheus::start(&PrometheusOptions::default()).unwrap())
        .collect();
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
    let at = t as f64 / 1000.0;
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
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let reads_b = shards[1].requests_served("/api/v1/read").unwrap();
        let answer = send(
            &proxy.url(),
            "GET",
            "/api/v1/query",
            &format!("query={q}&time={at}"),
            "",
        );
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
    // Not merged yet: an error in Prometheus' form, not one shard's answer.
    let series = send(&proxy.url(), "GET", "/api/v1/series", "match[]=fanout_m", "");
    assert_eq!(series.status, 501, "{}", series.body);
    assert_eq!(series.json()["errorType"], "unavailable");
}
