//! The proxy must be invisible: every request in `data/api_cases.tsv` is sent to a
//! real Prometheus 2.42 directly and through the proxy, and the answers compared.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use sketch_proxy_testkit::Prometheus;
use sketch_proxy_testkit::tls::{TestCa, basic_auth};
use support::{Answer, TestProxy, demo_prometheus, demo_prometheus_behind, send_with};

struct Case<'a> {
    line: usize,
    mode: &'a str,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    form: &'a str,
}

fn cases(table: &str) -> Vec<Case<'_>> {
    table
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(
                cols.len(),
                5,
                "line {}: want 5 tab-separated columns: {l:?}",
                i + 1
            );
            Case {
                line: i + 1,
                mode: cols[0],
                method: cols[1],
                path: cols[2],
                query: cols[3],
                form: cols[4],
            }
        })
        .collect()
}

/// The handler label Prometheus counts a request under.
fn prometheus_handler(path: &str) -> &str {
    if path.starts_with("/api/v1/label/") {
        "/api/v1/label/:name/values"
    } else {
        path
    }
}

/// An error message with Prometheus' `line:col: ` parse positions removed.
fn without_positions(message: &str) -> String {
    let mut words: Vec<&str> = message.split(' ').collect();
    words.retain(|w| {
        let w = w.trim_end_matches(':');
        !(w.contains(':')
            && w.split(':')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    });
    words.join(" ")
}

fn up_to_parse_error(message: &str) -> &str {
    message
        .find("parse error: ")
        .map_or(message, |i| &message[..i + "parse error: ".len()])
}

fn compare(case: &Case<'_>, direct: &Answer, proxied: &Answer, downstream_saw: f64) -> Result<(), String> {
    match case.mode {
        "exact" if direct == proxied => Ok(()),
        "exact" => Err(format!("direct:  {direct:?}\nproxied: {proxied:?}")),
        "status" if direct.status == proxied.status => Ok(()),
        "status" => Err(format!(
            "status: direct {} proxied {}",
            direct.status, proxied.status
        )),
        "local" => {
            if downstream_saw != 0.0 {
                return Err(format!(
                    "downstream saw {downstream_saw} request(s) for bad PromQL"
                ));
            }
            let (d, p) = (direct.json(), proxied.json());
            let d_msg = without_positions(d["error"].as_str().unwrap_or_default());
            let p_msg = p["error"].as_str().unwrap_or_default();
            if direct.status != proxied.status || d["errorType"] != p["errorType"] {
                return Err(format!("direct:  {direct:?}\nproxied: {proxied:?}"));
            }
            if !d_msg.contains("parse error: ") || up_to_parse_error(&d_msg) != up_to_parse_error(p_msg) {
                return Err(format!(
                    "messages differ before the parse error:\n{d_msg}\n{p_msg}"
                ));
            }
            Ok(())
        }
        other => Err(format!("unknown mode {other:?}")),
    }
}

#[test]
fn proxy_answers_exactly_like_prometheus() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    run_table(&prometheus, &proxy, &[]);
}

/// The same table with TLS and basic auth on both sides: Prometheus behind its
/// `--web.config.file`, the proxy behind its own, each with its own certificate and
/// password, the proxy sending downstream its configured credentials (from a file),
/// never the client's.
#[test]
fn proxy_answers_exactly_like_prometheus_over_tls_with_credentials() {
    let ca = TestCa::new().unwrap();
    let prometheus = demo_prometheus_behind(Some(
        ca.web_door("prometheus-web.yml", "prometheus", "prom-secret")
            .unwrap(),
    ));
    let password_file = ca.file("downstream-password");
    std::fs::write(&password_file, "prom-secret\n").unwrap();
    let door = ca
        .web_config("proxy-web.yml", Some(("grafana", "grafana-secret")))
        .unwrap();
    let proxy = TestProxy::start(
        &format!(
            "web:\n  config_file: {}\ndownstream:\n  tls_config:\n    ca_file: {}\n  basic_auth:\n    username: prometheus\n    password_file: {}\n",
            door.display(),
            ca.file("ca.pem").display(),
            password_file.display()
        ),
        &prometheus.url(),
    );
    assert!(prometheus.url().starts_with("https://") && proxy.url().starts_with("https://"));
    let grafana = basic_auth("grafana", "grafana-secret");
    assert_eq!(
        send_with(
            &proxy.url(),
            "GET",
            "/api/v1/labels",
            "",
            "",
            &[("Authorization", prometheus.authorization().unwrap())]
        )
        .status,
        401,
        "the proxy's door wants its own password, not downstream's"
    );
    run_table(&prometheus, &proxy, &[("Authorization", &grafana)]);
}

/// Sends every case directly and through the proxy (with `proxy_headers`) and compares.
fn run_table(prometheus: &Prometheus, proxy: &TestProxy, proxy_headers: &[(&str, &str)]) {
    let table = include_str!("data/api_cases.tsv");
    let cases = cases(table);
    let exact = cases.iter().filter(|c| c.mode == "exact").count();
    assert!(
        exact >= 60,
        "the table must hold at least 60 byte-for-byte cases, has {exact}"
    );
    let direct_headers: Vec<(&str, &str)> = prometheus
        .authorization()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();

    let mut failures = Vec::new();
    for case in &cases {
        let direct = send_with(
            &prometheus.url(),
            case.method,
            case.path,
            case.query,
            case.form,
            &direct_headers,
        );
        let handler = prometheus_handler(case.path);
        let before = prometheus.requests_served(handler).unwrap();
        let proxied = send_with(
            &proxy.url(),
            case.method,
            case.path,
            case.query,
            case.form,
            proxy_headers,
        );
        let saw = prometheus.requests_served(handler).unwrap() - before;
        if let Err(why) = compare(case, &direct, &proxied, saw) {
            failures.push(format!(
                "line {} {} {} {}?{} [{}]: {why}",
                case.line, case.mode, case.method, case.path, case.query, case.form
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn positions_are_removed_from_prometheus_parse_errors() {
    assert_eq!(
        without_positions("invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"),
        "invalid parameter \"query\": parse error: unclosed left parenthesis"
    );
    assert_eq!(without_positions("2:10: parse error: x"), "parse error: x");
}
