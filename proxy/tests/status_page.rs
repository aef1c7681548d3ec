//! The status page (issue 21): rendered by a real headless Chromium against a proxy with
//! sketches (the rule, the plugin table and drawn plots in the DOM, no console errors),
//! its Compare through its JSON endpoint, and the page under a route prefix behind the
//! proxy's basic auth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod support;

use std::process::Command;
use std::time::Duration;

use sketch_proxy_testkit::prometheus::require;
use sketch_proxy_testkit::tls::{TestCa, basic_auth};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};
use support::write::{self, Stored};
use support::{TestProxy, send, send_with};

const RULE_QUERY: &str = "quantile_over_time(0.9, status_m[1h])";

/// A proxy under `/sp` sketching `status_m` for [`RULE_QUERY`], with the last two and a
/// half hours of three series written through it (Compare's hour of 1 h windows
/// covered); `web` is its `web:` section's extra lines.
fn setup(web: &str) -> (Prometheus, TestProxy, tempfile::TempDir) {
    let prometheus = Prometheus::start(&PrometheusOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "web:\n  route_prefix: /sp\n{web}ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  queries:\n    - '{RULE_QUERY}'\n  query_retain: 3h\n",
        dir.path().display()
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    let start = (write::now_ms() - 9_000_000) / 1000 * 1000;
    let data = write::generate("status_m", 3, 900, start, 10_000, 5);
    let base = format!("{}/sp", proxy.url());
    for part in 0..5 {
        let batch: Stored = data
            .iter()
            .map(|(k, v)| (k.clone(), v[part * 180..(part + 1) * 180].to_vec()))
            .collect();
        let auth = auth_header(web);
        let mut headers = write::HEADERS.to_vec();
        headers.extend(auth.iter().map(|a| ("Authorization", a.as_str())));
        let answer = write::post_with(&base, &headers, write::snappy(&write::encode(&batch)));
        assert_eq!(answer.status, 204, "{}", answer.body);
    }
    let end = start + 899 * 10_000;
    wait_until(Duration::from_secs(60), "the samples to reach Prometheus", || {
        write::samples(&write::stored(&prometheus.url(), "status_m", end, "3h")) == 3 * 900
    })
    .unwrap();
    wait_until(Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    (prometheus, proxy, dir)
}

/// The `Authorization` a proxy with the `web` lines of [`setup`] wants, if any.
fn auth_header(web: &str) -> Option<String> {
    (!web.is_empty()).then(|| basic_auth("operator", "page-pw"))
}

/// `chromium --headless` on `url` with `args`: (stdout, stderr).
fn chromium(url: &str, args: &[&str]) -> (String, String) {
    let browser = require("chromium").unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_page_shows_rules_plugins_and_plots_in_a_browser_and_compares() {
    let (_prometheus, proxy, _dir) = setup("");
    let base = format!("{}/sp", proxy.url());
    // Queries for the plots: from sketches, and exact.
    for extra in ["", "&sketch=off"] {
        let q: String = form_urlencoded::byte_serialize(RULE_QUERY.as_bytes()).collect();
        let now = write::now_ms() / 1000;
        let params = format!("query={q}&start={}&end={now}&step=60{extra}", now - 1800);
        assert_eq!(send(&base, "GET", "/api/v1/query_range", &params, "").status, 200);
    }
    let (dom, log) = chromium(&format!("{base}/"), &["--dump-dom"]);
    // The rule the query made, its plugin, and uPlot's canvases in each plot.
    assert!(dom.contains("status_m"), "{dom}");
    let plugins = &dom[dom.find("id=\"plugins\"").expect("the plugin table")..];
    assert!(plugins.contains("quantile_over_time: within"), "{plugins}");
    for plot in ["plot-paths", "plot-cache", "plot-latency"] {
        let at = dom
            .find(&format!("id=\"{plot}\""))
            .unwrap_or_else(|| panic!("{plot}"));
        assert!(dom[at..].contains("<canvas"), "{plot} drawn: {dom}");
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    if let Some(path) = std::env::var_os("STATUS_PAGE_SCREENSHOT") {
        // How docs/status-page.png is taken (see the README).
        let shot = format!("--screenshot={}", std::path::Path::new(&path).display());
        chromium(
            &format!("{base}/"),
            &[&shot, "--window-size=1200,1900", "--hide-scrollbars"],
        );
    }

    // Compare, as its button asks.
    let q: String = form_urlencoded::byte_serialize(RULE_QUERY.as_bytes()).collect();
    let answer = send(&base, "GET", "/api/v1/status/compare", &format!("query={q}"), "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let data = &answer.json()["data"];
    assert_eq!(data["sketch"]["path"], "sketch", "{}", answer.body);
    // Prometheus knows quantile_over_time: the exact answer is its own.
    assert_eq!(data["exact"]["path"], "downstream", "{}", answer.body);
    assert_eq!(data["times"].as_array().unwrap().len(), 61);
    let compared = data["relativeErrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e.is_null())
        .count();
    assert!(compared >= 50, "most steps compared: {}", answer.body);
    let (max, bound) = (
        data["maxRelativeError"].as_f64().unwrap(),
        data["boundValue"].as_f64().unwrap(),
    );
    assert!(bound > 0.0, "{}", answer.body);
    assert!(max <= bound, "error {max} past the bound {bound}");
    assert_eq!(data["missingSeries"], 0, "{}", answer.body);
    let shown = data["exactValues"].as_array().unwrap();
    assert!(
        shown.iter().filter(|v| v.is_number()).count() >= 50,
        "{}",
        answer.body
    );
    let bad = send(&base, "GET", "/api/v1/status/compare", "query=sum(", "");
    assert_eq!(bad.status, 422, "{}", bad.body);
}

#[test]
fn the_page_answers_under_its_prefix_behind_basic_auth() {
    let ca = TestCa::new().unwrap();
    let door = ca.web_config("web.yml", Some(("operator", "page-pw"))).unwrap();
    let web = format!("  config_file: {}\n", door.display());
    let (_prometheus, proxy, _dir) = setup(&web);
    let auth = basic_auth("operator", "page-pw");
    let with_auth = [("Authorization", auth.as_str())];
    let base = format!("{}/sp", proxy.url());
    // (path, credentials, status, content type)
    let q: String = form_urlencoded::byte_serialize(RULE_QUERY.as_bytes()).collect();
    let compare = format!("/api/v1/status/compare?query={q}");
    let cases: [(&str, bool, u16, &str); 7] = [
        ("/", false, 401, ""),
        ("/", true, 200, "text/html; charset=utf-8"),
        (
            "/ui/uPlot.iife.min.js",
            true,
            200,
            "text/javascript; charset=utf-8",
        ),
        ("/ui/uPlot.min.css", true, 200, "text/css; charset=utf-8"),
        ("/ui/other.js", true, 404, ""),
        (&compare, true, 200, "application/json"),
        (&compare, false, 401, ""),
    ];
    for (path, authorised, status, content_type) in cases {
        let headers: &[(&str, &str)] = if authorised { &with_auth } else { &[] };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let answer = send_with(&base, "GET", path, query, "", headers);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        if !content_type.is_empty() {
            assert_eq!(answer.content_type, content_type, "{path}");
        }
        if path == "/" && status == 200 {
            // Links and scripts under the prefix.
            assert!(
                answer.body.contains("src=\"/sp/ui/uPlot.iife.min.js\""),
                "{}",
                answer.body
            );
            assert!(answer.body.contains(RULE_QUERY.replace('\'', "&#39;").as_str()));
        }
    }
    // Outside the prefix there is nothing.
    assert_eq!(
        send_with(&proxy.url(), "GET", "/", "", "", &with_auth).status,
        404
    );
}
