//! Operating the proxy: health, readiness, reload (HTTP and SIGHUP), metrics, route
//! prefix, `check-config`, and promtool as an independent client of the real binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use std::process::Command;
use std::time::Duration;

use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use sketch_proxy_testkit::{free_port, http_agent, prometheus::require, wait_until};
use support::{TestProxy, demo_prometheus, send, start_binary};

fn get_text(url: &str) -> (u16, String) {
    let mut response = http_agent().get(url).call().unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}

#[test]
fn healthy_and_ready_follow_downstream() {
    let prometheus = demo_prometheus();
    let up = TestProxy::start("", &prometheus.url());
    assert_eq!(get_text(&format!("{}/-/healthy", up.url())).0, 200);
    assert_eq!(
        get_text(&format!("{}/-/ready", up.url())),
        (200, "Sketch Proxy is Ready.\n".to_owned())
    );

    let down = TestProxy::start("", &format!("http://127.0.0.1:{}", free_port().unwrap()));
    assert_eq!(get_text(&format!("{}/-/healthy", down.url())).0, 200);
    let (status, body) = get_text(&format!("{}/-/ready", down.url()));
    assert_eq!(status, 503);
    assert!(body.contains("unreachable"), "{body}");
}

#[test]
fn reload_swaps_the_configuration_and_keeps_it_on_errors() {
    let prometheus = demo_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sketch-proxy.yml");
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    std::fs::write(&path, format!("downstream:\n  url: {dead}\n")).unwrap();
    let proxy = TestProxy::start_with(
        sketch_proxy::state::ConfigSource {
            path: Some(path.clone()),
            overrides: sketch_proxy::config::Overrides {
                listen: Some("127.0.0.1:0".to_owned()),
                enable_lifecycle: true,
                ..Default::default()
            },
        },
        (),
    );
    let query = || {
        send(
            &proxy.url(),
            "GET",
            "/api/v1/query",
            "query=up&time=1700003600",
            "",
        )
    };
    assert_eq!(query().status, 503);

    std::fs::write(&path, format!("downstream:\n  url: {}\n", prometheus.url())).unwrap();
    assert_eq!(send(&proxy.url(), "POST", "/-/reload", "", "").status, 200);
    assert_eq!(query().status, 200);

    std::fs::write(&path, "downstream:\n  url: ftp://nowhere\nlimits:\n  bogus: 1\n").unwrap();
    let failed = send(&proxy.url(), "POST", "/-/reload", "", "");
    assert_eq!(failed.status, 500);
    assert!(failed.body.contains("2 configuration errors"), "{}", failed.body);
    assert_eq!(
        query().status,
        200,
        "the running configuration stays after a failed reload"
    );
    let metrics = get_text(&format!("{}/metrics", proxy.url())).1;
    assert!(
        metrics.contains("sketch_proxy_config_last_reload_successful 0"),
        "{metrics}"
    );

    assert_eq!(send(&proxy.url(), "GET", "/-/reload", "", "").status, 405);
    drop(dir);
}

#[test]
fn metrics_count_requests() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    send(
        &proxy.url(),
        "GET",
        "/api/v1/query",
        "query=up&time=1700003600",
        "",
    );
    send(&proxy.url(), "POST", "/api/v1/query", "", "query=sum(");
    send(&proxy.url(), "GET", "/api/v1/label/job/values", "", "");
    let (status, text) = get_text(&format!("{}/metrics", proxy.url()));
    assert_eq!(status, 200);
    for want in [
        r#"sketch_proxy_http_requests_total{handler="/api/v1/query",method="GET",code="200"} 1"#,
        r#"sketch_proxy_http_requests_total{handler="/api/v1/query",method="POST",code="400"} 1"#,
        r#"sketch_proxy_http_requests_total{handler="/api/v1/label/:name/values",method="GET",code="200"} 1"#,
        r#"sketch_proxy_http_request_duration_seconds_count{handler="/api/v1/query"} 2"#,
        r#"sketch_proxy_downstream_request_duration_seconds_count{handler="/api/v1/query"} 1"#,
        "sketch_proxy_queries_in_flight 0",
        "sketch_proxy_config_last_reload_successful 1",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
}

/// `promtool check metrics` on a busy proxy's scrape: every family has help text and
/// a well-formed name; OpenMetrics only when asked for.
#[test]
fn the_metrics_pass_promtool_and_openmetrics_is_served_on_request() {
    let prometheus = demo_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "ingest:\n  enabled: true\n  queue_dir: {}\nsketches:\n  rules:\n    - match: 'busy'\n      functions: [quantile_over_time, distinct_over_time]\n      retain: 1h\n      complete: true\n",
        dir.path().join("queue").display()
    );
    let proxy = TestProxy::start(&yaml, &prometheus.url());
    for (query, form) in [
        ("query=up&time=1700003600", ""),
        ("", "query=sum("),
        ("query=quantile_over_time(0.5,up[5m])&time=1700003600", ""),
        ("query=distinct_over_time(up[5m])&time=1700003600", ""),
    ] {
        send(&proxy.url(), "POST", "/api/v1/query", query, form);
    }
    // A sketched series, written and then queried: plugin calls to time. Its rule is
    // `complete`, so the sketches list it (downstream may not hold it yet).
    let now = support::write::now_ms();
    let data = support::write::generate("busy", 1, 100, now - 1_000_000, 10_000, 3);
    assert_eq!(support::write::post(&proxy.url(), &data).status, 204);
    // Sketches serve once their rule's backfill has ended.
    wait_until(Duration::from_secs(60), "the backfills to end", || {
        proxy.proxy.sketches.backfills().iter().all(|j| !j.running())
    })
    .unwrap();
    let sketched = send(
        &proxy.url(),
        "GET",
        "/api/v1/query",
        &format!(
            "query=quantile_over_time(0.5,busy[10m])&time={}",
            now as f64 / 1000.0 - 5.0
        ),
        "",
    );
    assert_eq!(sketched.path.as_deref(), Some("sketch"), "{}", sketched.body);
    let classic = send(&proxy.url(), "GET", "/metrics", "", "");
    for want in [
        "sketch_proxy_queries_total{answered_by=\"downstream\"} 2\n",
        "sketch_proxy_queries_total{answered_by=\"engine\"} 1\n",
        "sketch_proxy_queries_total{answered_by=\"sketch\"} 1\n",
        "sketch_proxy_plugin_call_duration_seconds_count{plugin=\"quantile\",call=\"insert\"} ",
        "sketch_proxy_plugin_call_duration_seconds_count{plugin=\"quantile\",call=\"query_range\"} 1\n",
        "sketch_proxy_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"frequency\",call=\"create\"} 1\n",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
    ] {
        assert!(classic.body.contains(want), "missing {want}{}", classic.body);
    }
    assert_eq!(classic.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!classic.body.contains("# EOF"));
    assert!(
        classic
            .body
            .contains("# TYPE sketch_proxy_http_requests_total counter")
    );
    assert!(classic.body.contains("sketch_proxy_build_info{version=\""));
    let mut promtool = Command::new(require("promtool").unwrap())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), classic.body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
        classic.body
    );

    let answer = http_agent()
        .get(format!("{}/metrics", proxy.url()))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .call()
        .unwrap();
    let content_type = answer
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(answer.into_body().read_to_string().unwrap().ends_with("# EOF\n"));
}

#[test]
fn prometheus_scrapes_the_proxy_metrics() {
    let proxy = TestProxy::start("", &format!("http://127.0.0.1:{}", free_port().unwrap()));
    send(&proxy.url(), "GET", "/api/v1/labels", "", "");
    let scraper = Prometheus::start(&PrometheusOptions {
        scrape_configs: Some(format!(
            "  - job_name: sketch-proxy\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{}']\n",
            proxy.addr
        )),
        ..PrometheusOptions::default()
    })
    .unwrap();
    let query = format!(
        "{}/api/v1/query?query=sketch_proxy_http_requests_total%7Bhandler%3D%22/api/v1/labels%22%2Ccode%3D%22503%22%7D",
        scraper.url()
    );
    wait_until(Duration::from_secs(30), "Prometheus to scrape the proxy", || {
        get_text(&query).1.contains(r#""value":["#)
    })
    .unwrap();
    let up = get_text(&format!(
        "{}/api/v1/query?query=up%7Bjob%3D%22sketch-proxy%22%7D",
        scraper.url()
    ))
    .1;
    assert!(up.contains(r#""1"]"#), "{up}");
}

#[test]
fn downstream_failures_are_counted() {
    let proxy = TestProxy::start("", &format!("http://127.0.0.1:{}", free_port().unwrap()));
    send(&proxy.url(), "GET", "/api/v1/query", "query=up", "");
    let text = get_text(&format!("{}/metrics", proxy.url())).1;
    let want = r#"sketch_proxy_downstream_errors_total{handler="/api/v1/query",reason="unreachable"} 1"#;
    assert!(text.contains(want), "{text}");
}

#[test]
fn promtool_queries_through_the_binary_with_a_route_prefix() {
    let prometheus = demo_prometheus();
    let (_proxy, url) = start_binary(&[
        format!("--upstream={}", prometheus.url()),
        "--web.route-prefix=/prom".to_owned(),
    ]);
    let out = Command::new(require("promtool").unwrap())
        .args([
            "query",
            "instant",
            "--time=1700003600",
            &format!("{url}/prom"),
            "up",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#"up{instance="host-0:9100", job="node"} => 1 @[1700003600]"#),
        "{stdout}"
    );
    assert_eq!(
        get_text(&format!("{url}/api/v1/query?query=up")).0,
        404,
        "only the prefix is served"
    );
}

#[test]
fn sighup_reloads_the_binary() {
    let prometheus = demo_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sketch-proxy.yml");
    std::fs::write(&path, format!("downstream:\n  url: {}\n", prometheus.url())).unwrap();
    let (proxy, url) = start_binary(&[format!("--config={}", path.display())]);
    let query = format!("{url}/api/v1/query?query=up&time=1700003600");
    assert_eq!(get_text(&query).0, 200);
    let refused = send(&url, "POST", "/-/reload", "", "");
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (403, "Lifecycle API is not enabled."),
        "without --web.enable-lifecycle, as Prometheus"
    );

    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    std::fs::write(&path, format!("downstream:\n  url: {dead}\n")).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(10), "SIGHUP to switch downstream", || {
        get_text(&query).0 == 503
    })
    .unwrap();
}

#[test]
fn environment_variables_set_the_flags() {
    let prometheus = demo_prometheus();
    let port = free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
        .env("SKETCH_PROXY_WEB_LISTEN_ADDRESS", format!("127.0.0.1:{port}"))
        .env("SKETCH_PROXY_UPSTREAM", prometheus.url())
        .env("SKETCH_PROXY_WEB_ENABLE_LIFECYCLE", "true")
        .env("SKETCH_PROXY_WEB_ROUTE_PREFIX", "/env")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _running = support::Binary(child);
    let url = format!("http://127.0.0.1:{port}/env");
    wait_until(Duration::from_secs(30), "the proxy to serve", || {
        http_agent()
            .get(format!("{url}/-/healthy"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    })
    .unwrap();
    assert_eq!(
        send(&url, "GET", "/api/v1/query", "query=up&time=1700003600", "").status,
        200
    );
    assert_eq!(send(&url, "POST", "/-/reload", "", "").status, 200);
}

#[test]
fn check_config_reports_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &good,
        "downstream:\n  url: http://127.0.0.1:9090\n  timeout: 1m\n",
    )
    .unwrap();
    std::fs::write(&bad, "listen: here\ndownstream:\n  timeout: later\nlimit: {}\n").unwrap();
    let run = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
            .arg("check-config")
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = run(&good);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).ends_with(": OK\n"));
    let failed = run(&bad);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("3 configuration errors"), "{stderr}");
    for want in ["downstream.timeout:", "limit: unknown field", "listen: \"here\""] {
        assert!(stderr.contains(want), "missing {want}: {stderr}");
    }
}
