//! The sketch plugin written in Python (examples/python-plugin, built by its script with
//! componentize-py from PyPI): the binary loads it from the plugins directory, answers
//! `iqr_over_time` equal to Prometheus' `quantile_over_time(0.75) - quantile_over_time(0.25)`
//! (its bound is exact), still does after a reload, and quarantines it when it traps.
//! When the tool cannot be installed the build fails, and so does this test, loudly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod guest_support;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sketch_proxy::plugin_host::{Host, Observer, Settings};
use sketch_proxy_testkit::demo::{TEST_END, TEST_START};
use support::{demo_prometheus, send, start_binary};

/// Builds `iqr.wasm` once per test process; its path.
fn built() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/python-plugin");
        let out = Command::new("bash").arg(dir.join("build.sh")).output().unwrap();
        assert!(
            out.status.success(),
            "examples/python-plugin/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("iqr.wasm")
    })
}

/// A plugins directory holding the built plugin, with a cache for its compiled form
/// (it is 18 MB of CPython: compiled once, not at every reload).
fn plugins_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(built(), dir.path().join("plugins/iqr.wasm")).unwrap();
    dir
}

const IQR: &str = "iqr_over_time(demo_request_duration_seconds[10m])";
/// What it is, in PromQL Prometheus knows.
const EXACT: &str = "quantile_over_time(0.75, demo_request_duration_seconds[10m]) - quantile_over_time(0.25, demo_request_duration_seconds[10m])";

fn values(answer: &support::Answer) -> Vec<(String, String, f64)> {
    let json = answer.json();
    assert_eq!(json["status"], "success", "{}", answer.body);
    let mut out = Vec::new();
    for s in json["data"]["result"].as_array().unwrap() {
        for p in s["values"].as_array().unwrap() {
            out.push((
                s["metric"].to_string(),
                p[0].to_string(),
                p[1].as_str().unwrap().parse().unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[test]
fn the_python_plugin_answers_through_the_binary_and_after_a_reload() {
    let prometheus = demo_prometheus();
    let dir = plugins_dir();
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(
        &config,
        format!(
            "plugins:\n  dir: {}\n  cache_dir: {}\n  instances: 1\n",
            dir.path().join("plugins").display(),
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let (_proxy, url) = start_binary(&[
        format!("--upstream={}", prometheus.url()),
        format!("--config={}", config.display()),
        "--web.enable-lifecycle".to_owned(),
    ]);
    let range = format!("start={}&end={TEST_END}&step=60", TEST_START + 900);
    let ask = |base: &str, query: &str| {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        send(
            base,
            "GET",
            "/api/v1/query_range",
            &format!("query={q}&{range}"),
            "",
        )
    };
    let want = values(&ask(&prometheus.url(), EXACT));
    assert!(want.len() > 100, "{want:?}");
    for round in ["loaded", "after a reload"] {
        let answer = ask(&url, IQR);
        assert!(
            answer.body.contains(
                "iqr_over_time computed from raw samples by its plugin (no sketch covers it): exact"
            ),
            "{round}: {}",
            answer.body
        );
        // Labels: Prometheus drops the name from both quantiles, the plugin's function too.
        let got = values(&answer);
        assert_eq!(got.len(), want.len(), "{round}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.0, &g.1), (&w.0, &w.1), "{round}");
            assert!(
                (g.2 - w.2).abs() <= 1e-12 * w.2.abs(),
                "{round}: {g:?} against {w:?}"
            );
        }
        assert_eq!(send(&url, "POST", "/-/reload", "", "").status, 200, "{round}");
    }
}

#[test]
fn a_python_plugin_that_raises_is_quarantined() {
    let dir = plugins_dir();
    let settings = Settings {
        instances: 1,
        call_timeout: Duration::from_secs(5),
        cache_dir: Some(dir.path().join("cache")),
        ..guest_support::settings(Some(dir.path().join("plugins")))
    };
    let recorder = Arc::new(guest_support::Recorder::default());
    let observer: Arc<dyn Observer> = recorder.clone();
    let set = Host::global().unwrap().load(&settings, &observer);
    assert!(set.rejected().is_empty(), "{:?}", set.rejected());
    let plugin = set.by_name("iqr").expect("the Python plugin loaded");
    // Its test hook: an uncaught Python exception on this value.
    let sketch = plugin
        .create(1, &guest_support::config(3_600_000, &[("trap_on_value", "13")]))
        .unwrap();
    sketch.insert(&[1000, 2000], &[1.0, 2.0]).unwrap();
    assert!(!plugin.is_quarantined());
    assert!(sketch.insert(&[3000], &[13.0]).is_err());
    assert!(plugin.is_quarantined());
    assert!(
        plugin.quarantine_reason().is_some_and(|r| !r.is_empty()),
        "{:?}",
        plugin.quarantine_reason()
    );
}
