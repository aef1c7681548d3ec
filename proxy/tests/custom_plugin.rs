//! A custom plugin dropped into the plugins directory is queryable end to end: its
//! function parses, is answered from raw samples by a fresh sketch of the plugin when
//! no sketch covers it, and goes away with the plugin on reload.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod guest_support;
mod support;

use serde_json::Value;
use sketch_proxy_testkit::demo::{TEST_END, TEST_START};
use support::{Answer, TestProxy, demo_prometheus, send, start_binary};

fn form(query: &str, params: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("query", query);
    format!("{}&{params}", out.finish())
}

/// `{labels: [(t, v)]}` of a vector or matrix answer.
fn points(answer: &Answer) -> std::collections::BTreeMap<String, Vec<(f64, f64)>> {
    let json = answer.json();
    let mut out = std::collections::BTreeMap::new();
    for series in json["data"]["result"].as_array().unwrap() {
        let values: Vec<Value> = match series.get("values") {
            Some(v) => v.as_array().unwrap().clone(),
            None => vec![series["value"].clone()],
        };
        let parsed = values
            .iter()
            .map(|p| {
                (
                    p[0].as_f64().unwrap(),
                    p[1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect();
        out.insert(series["metric"].to_string(), parsed);
    }
    out
}

const SPREAD: &str = "spread_over_time(demo_request_duration_seconds[10m])";
/// What spread is, in PromQL Prometheus knows.
const EXACT: &str =
    "max_over_time(demo_request_duration_seconds[10m]) - min_over_time(demo_request_duration_seconds[10m])";

fn plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        guest_support::guest_path("spread"),
        dir.path().join("spread.wasm"),
    )
    .unwrap();
    dir
}

/// Reported: `spread_over_time(m[10m])` with the example plugin loaded got 400
/// "unknown function with name 'spread_over_time'".
#[test]
fn the_example_plugin_answers_spread_over_time_through_the_binary() {
    let prometheus = demo_prometheus();
    let dir = plugins_dir();
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(&config, format!("plugins:\n  dir: {}\n", dir.path().display())).unwrap();
    let (_proxy, url) = start_binary(&[
        format!("--upstream={}", prometheus.url()),
        format!("--config={}", config.display()),
    ]);
    let cases = [
        ("/api/v1/query", format!("time={TEST_END}")),
        (
            "/api/v1/query_range",
            format!("start={}&end={TEST_END}&step=60", TEST_START + 900),
        ),
    ];
    for (path, params) in cases {
        let answer = send(&url, "POST", path, "", &form(SPREAD, &params));
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.path.as_deref(), Some("engine"));
        assert_eq!(
            answer.json()["warnings"][0],
            "spread_over_time computed from raw samples by its plugin (no sketch covers it): exact"
        );
        let exact = send(&prometheus.url(), "POST", path, "", &form(EXACT, &params));
        let (got, want) = (points(&answer), points(&exact));
        assert!(!want.is_empty());
        assert_eq!(got.len(), want.len(), "{path}");
        for ((labels, got), want) in got.iter().zip(want.values()) {
            assert_eq!(got.len(), want.len(), "{path} {labels}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.0, w.0, "{path} {labels}");
                assert!(
                    (g.1 - w.1).abs() <= 1e-12 * w.1.abs().max(1.0),
                    "{path} {labels}: {g:?} vs {w:?}"
                );
            }
        }
    }
}

#[test]
fn a_removed_plugin_takes_its_function_with_it_on_reload() {
    let prometheus = demo_prometheus();
    let dir = plugins_dir();
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(&config, format!("plugins:\n  dir: {}\n", dir.path().display())).unwrap();
    let proxy = TestProxy::start_file(&config, &prometheus.url());
    let query = form(SPREAD, &format!("time={TEST_END}"));
    assert_eq!(
        send(&proxy.url(), "POST", "/api/v1/query", "", &query).status,
        200
    );

    std::fs::remove_file(dir.path().join("spread.wasm")).unwrap();
    assert_eq!(send(&proxy.url(), "POST", "/-/reload", "", "").status, 200);
    let gone = send(&proxy.url(), "POST", "/api/v1/query", "", &query);
    assert_eq!(gone.status, 400, "{gone:?}");
    assert_eq!(
        gone.json()["error"],
        "invalid parameter \"query\": parse error: unknown function with name 'spread_over_time'"
    );

    std::fs::copy(
        guest_support::guest_path("spread"),
        dir.path().join("spread.wasm"),
    )
    .unwrap();
    assert_eq!(send(&proxy.url(), "POST", "/-/reload", "", "").status, 200);
    assert_eq!(
        send(&proxy.url(), "POST", "/api/v1/query", "", &query).status,
        200
    );
}
