//! A tier of sketch-proxies (issue 20): leaf proxies each sketch a share of the series
//! written to them, and a top proxy listing them as `kind: sketch_proxy` endpoints
//! pushes the sketch functions down to them. Its answers equal those of one proxy
//! sketching every series; a leaf down makes them partial, or fails them with
//! `partial_response=false`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::TestProxy;
use support::write::{self, Stored};

const METRIC: &str = "tier_m";

/// A proxy sketching `METRIC` with every function, in front of its own Prometheus.
struct Sketching {
    prometheus: Prometheus,
    proxy: TestProxy,
    _dir: tempfile::TempDir,
}

impl Sketching {
    fn start() -> Self {
        let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  rules:\n    - match: {METRIC}\n      functions: [quantile_over_time, distinct_over_time, entropy_over_time, l2_over_time]\n      retain: 3h\n      complete: true\ncache:\n  enabled: false\n",
            dir.path().display()
        );
        let proxy = TestProxy::start(&yaml, &prometheus.url());
        Self {
            prometheus,
            proxy,
            _dir: dir,
        }
    }

    /// Writes `data` through the proxy, and waits until its Prometheus holds it and no
    /// backfill runs.
    fn write(&self, data: &Stored, end: i64) {
        assert_eq!(write::post(&self.proxy.url(), data).status, 204);
        wait_until(Duration::from_secs(60), "Prometheus to hold every sample", || {
            write::samples(&write::stored(&self.prometheus.url(), METRIC, end, "2h")) == write::samples(data)
        })
        .unwrap();
        wait_until(Duration::from_secs(60), "the backfills to end", || {
            self.proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
        })
        .unwrap();
    }
}

/// A range answer's points by (labels without `shard`, time); the top proxy's series
/// carry their leaf's external label.
fn points(answer: &support::Answer) -> BTreeMap<(String, i64), f64> {
    answer
        .range_values()
        .into_iter()
        .map(|((labels, t), v)| {
            let mut labels: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&labels).unwrap();
            labels.remove("shard");
            ((serde_json::Value::Object(labels).to_string(), t), v)
        })
        .collect()
}

#[test]
fn a_top_proxy_over_two_leaves_answers_as_one_proxy_holding_every_series() {
    let single = Sketching::start();
    let leaves = [Sketching::start(), Sketching::start()];
    // 2,000 samples a second apart: windows of 30 minutes are past what the plugins
    // keep whole, so the answers are sketches' (approximate), not exact.
    let start = (write::now_ms() - 2_400_000) / 1000 * 1000;
    let data = write::generate(METRIC, 6, 2000, start, 1000, 21);
    let end = start + 1999 * 1000;
    single.write(&data, end);
    let mut shares = [Stored::new(), Stored::new()];
    for (i, (labels, points)) in data.into_iter().enumerate() {
        shares[i % 2].insert(labels, points);
    }
    for (leaf, share) in leaves.iter().zip(&shares) {
        leaf.write(share, end);
    }
    let top_yaml = |push: bool| {
        format!(
            "downstream:\n  endpoints:\n    - url: {}\n      kind: sketch_proxy\n      external_labels: {{shard: a}}\n    - url: {}\n      kind: sketch_proxy\n      external_labels: {{shard: b}}\nquery:\n  push_down: {push}\ncache:\n  enabled: false\n",
            leaves[0].proxy.url(),
            leaves[1].proxy.url()
        )
    };
    let top = TestProxy::start(&top_yaml(true), &leaves[0].proxy.url());
    let window = (start + 1_800_000, end, 20_000);
    let urls = format!("{} {}", leaves[0].proxy.url(), leaves[1].proxy.url());
    // (query, what the top pushes down)
    let cases = [
        (
            "quantile_over_time(0.9, tier_m[30m])",
            "quantile_over_time(0.9, tier_m[30m])",
        ),
        ("entropy_over_time(tier_m[30m])", "entropy_over_time(tier_m[30m])"),
        ("l2_over_time(tier_m[30m])", "l2_over_time(tier_m[30m])"),
        (
            "sum(distinct_over_time(tier_m[30m]))",
            "sum(distinct_over_time(tier_m[30m]))",
        ),
        (
            "quantile(0.5, quantile_over_time(0.99, tier_m[30m]))",
            "quantile_over_time(0.99, tier_m[30m])",
        ),
    ];
    for (query, part) in cases {
        let one = support::range_query(&single.proxy.url(), query, window, "");
        let tiered = support::range_query(&top.url(), query, window, "");
        assert_eq!(one.path.as_deref(), Some("sketch"), "{query}: {}", one.body);
        assert_eq!(tiered.status, 200, "{query}: {}", tiered.body);
        assert_eq!(tiered.pushed, Some(format!("{part} @ {urls}")), "{query}");
        assert_eq!(points(&tiered), points(&one), "{query}");
        // Each series once: none came from both leaves.
        let series = |a: &support::Answer| a.json()["data"]["result"].as_array().unwrap().len();
        assert_eq!(series(&tiered), series(&one), "{query}");
        // The leaves' word that sketches answered reaches the client.
        let function = ["quantile", "entropy", "l2", "distinct"]
            .into_iter()
            .map(|f| format!("{f}_over_time"))
            .find(|f| part.contains(f.as_str()))
            .unwrap();
        assert!(
            tiered
                .body
                .contains(&format!("{function} answered from sketches: ")),
            "{query}: {}",
            tiered.body
        );
    }
    // What the top asks of a leaf: a compact answer, gzipped; a JSON one otherwise.
    let form = format!(
        "query={}&start={}&end={}&step=20",
        form_urlencoded::byte_serialize(b"quantile_over_time(0.9, tier_m[30m])").collect::<String>(),
        window.0 as f64 / 1000.0,
        window.1 as f64 / 1000.0
    );
    let media = sketch_proxy::api::wire::compact::MEDIA_TYPE;
    for (accept, want) in [
        (format!("{media}, application/json;q=0.5"), media),
        ("application/json".to_owned(), "application/json"),
    ] {
        let answer = support::send_with(
            &leaves[0].proxy.url(),
            "POST",
            "/api/v1/query_range",
            "",
            &form,
            &[("Accept", accept.as_str()), ("Accept-Encoding", "gzip")],
        );
        assert_eq!(answer.status, 200, "{accept}");
        assert_eq!(answer.content_type, want, "{accept}");
    }
    // Without push-down the top reads the leaves' raw data and computes exactly: the
    // tier's answer is the sketches', which differs.
    let reading = TestProxy::start(&top_yaml(false), &leaves[0].proxy.url());
    let query = "quantile_over_time(0.9, tier_m[30m])";
    let exact = support::range_query(&reading.url(), query, window, "");
    assert_eq!(exact.pushed, None);
    let sketched = support::range_query(&top.url(), query, window, "");
    assert_ne!(points(&exact), points(&sketched), "sketches are approximate here");

    // A leaf down: a partial answer with a warning, or a failure when asked for.
    let [leaf_a, leaf_b] = leaves;
    let down = leaf_b.proxy.url();
    drop(leaf_b);
    let partial = support::range_query(&top.url(), query, window, "");
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert!(
        partial
            .body
            .contains(&format!("partial response: endpoint {down} (")),
        "{}",
        partial.body
    );
    assert_eq!(partial.cache_control.as_deref(), Some("no-store"));
    assert_eq!(partial.pushed, Some(format!("{query} @ {}", leaf_a.proxy.url())));
    let whole_leaf_a: BTreeMap<_, _> = points(&sketched)
        .into_iter()
        .filter(|((labels, _), _)| {
            shares[0].keys().any(|k| {
                k.iter()
                    .all(|(n, v)| n == "__name__" || labels.contains(&format!("\"{n}\":\"{v}\"")))
            })
        })
        .collect();
    assert!(!whole_leaf_a.is_empty());
    assert_eq!(points(&partial), whole_leaf_a, "leaf a's series, as before");
    let strict = support::range_query(&top.url(), query, window, "&partial_response=false");
    assert_eq!(strict.status, 503, "{}", strict.body);
    assert_eq!(strict.json()["errorType"], "unavailable", "{}", strict.body);
    // `sketch=off` reaches the leaves: the top's exact answer is exact.
    let exact_at_top = support::range_query(&top.url(), query, window, "&sketch=off");
    let exact_at_leaf_a = support::range_query(&leaf_a.proxy.url(), query, window, "&sketch=off");
    assert_eq!(exact_at_top.status, 200, "{}", exact_at_top.body);
    assert!(
        !exact_at_top.body.contains("answered from sketches"),
        "{}",
        exact_at_top.body
    );
    assert_eq!(points(&exact_at_top), points(&exact_at_leaf_a));
}
