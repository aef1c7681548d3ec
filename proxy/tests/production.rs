//! Running it where production Prometheus servers live: TLS and credentials towards
//! downstream and remote-write destinations, the proxy's own door (TLS, basic auth,
//! certificate reload), the admin API kept closed, and secrets kept out of every output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: a failed step must fail the test loudly"
)]

mod support;

use std::time::Duration;

use sketch_proxy_testkit::tls::{TestCa, basic_auth};
use sketch_proxy_testkit::{ConnectProxy, Prometheus, PrometheusOptions, Recorder, free_port, wait_until};
use support::write::{self, stored_as};
use support::{TestProxy, demo_prometheus, demo_prometheus_behind, send, send_with};

const QUERY: &str = "query=up&time=1700003600";

/// A Prometheus behind TLS and basic auth (`prometheus` / `prom-secret`).
fn guarded_prometheus(ca: &TestCa, options: PrometheusOptions) -> Prometheus {
    Prometheus::start(&PrometheusOptions {
        web: Some(
            ca.web_door("prometheus-web.yml", "prometheus", "prom-secret")
                .unwrap(),
        ),
        ..options
    })
    .unwrap()
}

#[test]
fn the_door_wants_the_password_and_picks_up_a_new_certificate() {
    let prometheus = demo_prometheus();
    let ca = TestCa::new().unwrap();
    let door = ca.web_config("web.yml", Some(("grafana", "right"))).unwrap();
    let proxy = TestProxy::start(
        &format!("web:\n  config_file: {}\n", door.display()),
        &prometheus.url(),
    );
    let url = proxy.url();
    assert!(url.starts_with("https://"), "{url}");

    // (Authorization header, expected status)
    let right = basic_auth("grafana", "right");
    let table = [
        (None, 401),
        (Some(basic_auth("grafana", "wrong")), 401),
        (Some(basic_auth("nobody", "right")), 401),
        (Some("Bearer right".to_owned()), 401),
        (Some(right.clone()), 200),
    ];
    for (auth, status) in &table {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        for path in ["/api/v1/query", "/metrics", "/-/healthy"] {
            let answer = send_with(
                &url,
                "GET",
                path,
                if path == "/api/v1/query" { QUERY } else { "" },
                "",
                &headers,
            );
            assert_eq!(answer.status, *status, "{path} with {auth:?}: {}", answer.body);
            if *status == 401 {
                assert_eq!(answer.body, "Unauthorized\n");
            }
        }
    }
    let agent = sketch_proxy_testkit::http_agent();
    let answer = agent.get(format!("{url}/-/healthy")).call().unwrap();
    assert_eq!(answer.headers().get("www-authenticate").unwrap(), "Basic");

    // A second CA's certificate written over the first: an agent that trusts only the
    // second CA is refused until the proxy reads the new files.
    let next = TestCa::new().unwrap();
    let pem = std::fs::read(next.file("ca.pem")).unwrap();
    let only_next: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    ureq::tls::Certificate::from_pem(&pem).unwrap(),
                ])))
                .build(),
        )
        .build()
        .into();
    let healthy = format!("{url}/-/healthy");
    let with_next = || only_next.get(&healthy).header("Authorization", &right).call();
    assert!(
        with_next().is_err(),
        "the first certificate is not signed by the second CA"
    );
    for file in ["server.pem", "server-key.pem"] {
        std::fs::copy(next.file(file), ca.file(file)).unwrap();
    }
    wait_until(
        Duration::from_secs(15),
        "the door to serve the new certificate",
        || with_next().is_ok_and(|r| r.status() == 200),
    )
    .unwrap();
}

#[test]
fn prometheus_scrapes_the_proxy_over_tls_with_basic_auth() {
    let ca = TestCa::new().unwrap();
    let door = ca.web_config("web.yml", Some(("scraper", "scrape-pw"))).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    let proxy = TestProxy::start(&format!("web:\n  config_file: {}\n", door.display()), &dead);
    let scraper = Prometheus::start(&PrometheusOptions {
        scrape_configs: Some(format!(
            "  - job_name: sketch-proxy\n    scrape_interval: 1s\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: scraper\n      password: scrape-pw\n    static_configs:\n      - targets: ['{}']\n",
            ca.file("ca.pem").display(),
            proxy.addr
        )),
        ..PrometheusOptions::default()
    })
    .unwrap();
    let up = format!(
        "{}/api/v1/query?query=up%7Bjob%3D%22sketch-proxy%22%7D",
        scraper.url()
    );
    wait_until(Duration::from_secs(30), "a successful scrape over TLS", || {
        send(&up, "GET", "", "", "").body.contains(r#""1"]"#)
    })
    .unwrap();
}

#[test]
fn the_admin_api_stays_closed_without_the_flag() {
    // Downstream has its admin API on: only the proxy's flag may open the way.
    let prometheus = Prometheus::start(&PrometheusOptions {
        openmetrics: Some(sketch_proxy_testkit::demo::openmetrics(
            sketch_proxy_testkit::demo::TEST_START,
            sketch_proxy_testkit::demo::TEST_END,
        )),
        extra_args: vec!["--web.enable-admin-api".to_owned()],
        ..PrometheusOptions::default()
    })
    .unwrap();
    let handler = "/api/v1/admin/tsdb/delete_series";
    let closed = TestProxy::start("", &prometheus.url());
    // (method, path, status)
    let table = [
        ("POST", "/api/v1/admin/tsdb/delete_series", 503),
        ("PUT", "/api/v1/admin/tsdb/delete_series", 503),
        ("POST", "/api/v1/admin/tsdb/snapshot", 503),
        ("POST", "/api/v1/admin/tsdb/clean_tombstones", 503),
        ("GET", "/api/v1/admin/tsdb/delete_series", 405),
        ("POST", "/api/v1/admin/other", 404),
    ];
    for (method, path, status) in table {
        let answer = send(&closed.url(), method, path, "match[]=up", "");
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        if status == 503 {
            assert_eq!(
                answer.body,
                r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#
            );
        }
    }
    assert_eq!(
        prometheus.requests_served(handler).unwrap(),
        0.0,
        "nothing reached downstream"
    );
    assert!(
        send(&closed.url(), "GET", "/api/v1/query", QUERY, "")
            .body
            .contains("host-0")
    );

    let open = TestProxy::start("web:\n  enable_admin_api: true\n", &prometheus.url());
    let answer = send(&open.url(), "POST", handler, "match[]=up", "");
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(prometheus.requests_served(handler).unwrap(), 1.0);
}

#[test]
fn remote_write_reaches_a_tls_destination_with_credentials() {
    let ca = TestCa::new().unwrap();
    let prometheus = guarded_prometheus(&ca, PrometheusOptions::default());
    let queue = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(
        &format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\n  min_backoff: 20ms\n  max_backoff: 500ms\n  destinations:\n    - url: {}/api/v1/write\n      tls_config:\n        ca_file: {}\n      basic_auth:\n        username: prometheus\n        password: prom-secret\n",
            queue.path().display(),
            prometheus.url(),
            ca.file("ca.pem").display()
        ),
        &prometheus.url(),
    );
    let start = write::now_ms() - 600_000;
    let data = write::generate("tls_written", 3, 50, start, 10_000, 7);
    assert_eq!(write::post(&proxy.url(), &data).status, 204);
    let auth = prometheus.authorization().map(str::to_owned);
    wait_until(Duration::from_secs(30), "the samples to arrive over TLS", || {
        stored_as(
            &prometheus.url(),
            auth.as_deref(),
            "tls_written",
            write::now_ms(),
            "1h",
        ) == data
    })
    .unwrap();
}

#[test]
fn downstream_gets_its_own_token_read_again_when_the_file_changes() {
    let downstream = Recorder::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let proxy = TestProxy::start(
        &format!(
            "downstream:\n  url: {}\n  authorization:\n    credentials_file: {}\n  headers:\n    X-Scope-OrgID: team-a\n",
            downstream.url(),
            token.display()
        ),
        &downstream.url(),
    );
    let client_token = [("Authorization", "Bearer the-clients-own")];
    assert_eq!(
        send_with(&proxy.url(), "GET", "/api/v1/labels", "", "", &client_token).status,
        200
    );
    std::fs::write(&token, "second-token-longer\n").unwrap();
    assert_eq!(
        send_with(&proxy.url(), "GET", "/api/v1/labels", "", "", &client_token).status,
        200
    );
    let seen: Vec<(Option<String>, Option<String>)> = downstream
        .requests()
        .iter()
        .map(|r| {
            let get = |name: &str| r.header(name).map(str::to_owned);
            (get("authorization"), get("x-scope-orgid"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("Bearer first-token".to_owned()), Some("team-a".to_owned())),
            (
                Some("Bearer second-token-longer".to_owned()),
                Some("team-a".to_owned())
            ),
        ]
    );
}

#[test]
fn downstream_is_reached_through_a_proxy_url() {
    let ca = TestCa::new().unwrap();
    let prometheus = demo_prometheus_behind(Some(
        ca.web_door("prometheus-web.yml", "prometheus", "prom-secret")
            .unwrap(),
    ));
    let forward = ConnectProxy::start().unwrap();
    // The credentials ride in the URL here: they become basic auth.
    let upstream = prometheus
        .url()
        .replace("https://", "https://prometheus:prom-secret@");
    let proxy = TestProxy::start(
        &format!(
            "downstream:\n  proxy_url: {}\n  tls_config:\n    ca_file: {}\n",
            forward.url(),
            ca.file("ca.pem").display()
        ),
        &upstream,
    );
    let answer = send(&proxy.url(), "GET", "/api/v1/query", QUERY, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("host-0"), "{}", answer.body);
    assert!(
        forward.tunnels() >= 1,
        "the connection went through the CONNECT proxy"
    );
}

/// Secrets in the configuration, in a URL and in a client's request never show in the
/// log (at debug, in both formats), in `/metrics`, in the status outputs or in
/// configuration errors. The debug log carries the proxy's lines only, uncoloured.
#[test]
fn secrets_never_show() {
    let prometheus = demo_prometheus();
    let ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        "url-secret-1",
        "inline-secret-2",
        "file-secret-3",
        "door-secret-4",
        "bad-secret-5",
    ];
    std::fs::write(dir.path().join("token"), secrets[2]).unwrap();
    let door = ca.web_config("web.yml", Some(("grafana", secrets[3]))).unwrap();
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(
        &config,
        format!(
            "downstream:\n  url: {}\ningest:\n  enabled: true\n  queue_dir: {}\n  destinations:\n    - url: http://127.0.0.1:{}/api/v1/write\n      basic_auth:\n        username: w\n        password: {}\n    - url: http://127.0.0.1:{}/api/v1/write\n      authorization:\n        credentials_file: {}\n",
            prometheus.url().replace("http://", &format!("http://user:{}@", secrets[0])),
            dir.path().join("queue").display(),
            free_port().unwrap(),
            secrets[1],
            free_port().unwrap(),
            dir.path().join("token").display(),
        ),
    )
    .unwrap();
    let auth = basic_auth("grafana", secrets[3]);
    let headers = [("Authorization", auth.as_str())];
    for format in ["logfmt", "json"] {
        let log = dir.path().join(format!("{format}.log"));
        let port = free_port().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
            .args([
                format!("--config.file={}", config.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                format!("--web.config.file={}", door.display()),
                "--log.level=debug".to_owned(),
                format!("--log.format={format}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let _running = support::Binary(child);
        let url = format!("https://127.0.0.1:{port}");
        wait_until(Duration::from_secs(30), "the proxy to serve", || {
            sketch_proxy_testkit::http_agent()
                .get(format!("{url}/-/healthy"))
                .header("Authorization", &auth)
                .call()
                .is_ok_and(|r| r.status() == 200)
        })
        .unwrap();
        let mut outputs = Vec::new();
        for (path, query) in [
            ("/api/v1/query", QUERY),
            ("/api/v1/query", "query=nonsense((("),
            ("/metrics", ""),
            ("/-/ready", ""),
            ("/api/v1/status/sketches", ""),
            ("/api/v1/status/buildinfo", ""),
        ] {
            outputs.push(send_with(&url, "GET", path, query, "", &headers).body);
        }
        let data = write::generate("secret_test", 20, 5, write::now_ms() - 60_000, 10_000, 1);
        let written = write::post_with(
            &url,
            &[
                ("Authorization", auth.as_str()),
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            write::snappy(&write::encode(&data)),
        );
        assert_eq!(written.status, 204, "{}", written.body);
        // The senders fail against closed ports and log it; wait for those lines.
        wait_until(
            Duration::from_secs(30),
            "the senders to log their failures",
            || {
                std::fs::read_to_string(&log)
                    .unwrap()
                    .matches("send failed")
                    .count()
                    >= 2
            },
        )
        .unwrap_or_else(|e| panic!("{e}:\n{}", std::fs::read_to_string(&log).unwrap()));
        let text = std::fs::read_to_string(&log).unwrap();
        // Debug is the proxy's own: wasmtime and cranelift stay at warn, and a file
        // gets no colour codes.
        for quiet in [
            "target=cranelift",
            "target=wasmtime",
            "\"target\":\"cranelift",
            "\"target\":\"wasmtime",
        ] {
            assert!(!text.contains(quiet), "{format}: {quiet} lines at debug");
        }
        assert!(!text.contains('\x1b'), "{format}: colour codes in a file");
        assert!(
            text.contains("served"),
            "{format}: the proxy's own debug lines are there"
        );
        outputs.push(text);
        for (i, output) in outputs.iter().enumerate() {
            for secret in &secrets {
                assert!(
                    !output.contains(secret),
                    "{format}: output {i} shows {secret}:\n{output}"
                );
            }
        }
    }

    // A broken file with a secret in a URL: check-config names the field, not the secret.
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        format!("downstream:\n  url: http://u:{}@[::1\n", secrets[4]),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() && text.contains("downstream.url"), "{text}");
    assert!(!text.contains(secrets[4]), "{text}");
}

/// What the proxy answers itself is gzip-compressed for a client that accepts it, as
/// Prometheus compresses; downstream's answers come compressed by downstream.
#[test]
fn answers_are_gzipped_for_clients_that_accept_it() {
    let prometheus = demo_prometheus();
    let proxy = TestProxy::start("", &prometheus.url());
    // (query, the path that answers)
    for (query, path) in [
        ("query=distinct_over_time(up[1h])&time=1700003600", "engine"),
        ("query=up&time=1700003600", "downstream"),
    ] {
        let plain = send(&proxy.url(), "GET", "/api/v1/query", query, "");
        assert_eq!(plain.path.as_deref(), Some(path));
        let mut response = sketch_proxy_testkit::http_agent()
            .get(format!("{}/api/v1/query?{query}", proxy.url()))
            .header("Accept-Encoding", "gzip")
            .call()
            .unwrap();
        assert_eq!(
            response.headers().get("content-encoding").unwrap(),
            "gzip",
            "{path}"
        );
        let compressed = response.body_mut().read_to_vec().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(compressed.as_slice()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, plain.body, "{path}");
        assert!(compressed.len() < text.len(), "{path}");
    }
}

/// Twenty identical queries at once (as dashboards opening together) cost downstream
/// one request; each client gets the whole answer.
#[test]
fn identical_queries_in_flight_reach_downstream_once() {
    let downstream = Recorder::held().unwrap();
    // Without the results cache, to see that collapsing keeps nothing.
    let proxy = TestProxy::start("cache:\n  enabled: false\n", &downstream.url());
    let url = proxy.url();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            // GET and POST, parameters in either order: the same query.
            std::thread::spawn(move || match i % 2 {
                0 => send(&url, "GET", "/api/v1/query", "query=up&time=1700003600", ""),
                _ => send(&url, "POST", "/api/v1/query", "", "time=1700003600&query=up"),
            })
        })
        .collect();
    let metrics = || send(&url, "GET", "/metrics", "", "").body;
    wait_until(Duration::from_secs(30), "every query to be in flight", || {
        metrics().contains("sketch_proxy_collapsible_queries_in_flight 20\n")
    })
    .unwrap();
    downstream.release();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        answers
            .iter()
            .all(|a| a.status == 200 && a.body == answers[0].body),
        "{answers:?}"
    );
    assert_eq!(downstream.requests().len(), 1, "one request downstream");
    assert!(
        metrics().contains("sketch_proxy_collapsed_queries_total 19\n"),
        "{}",
        metrics()
    );
    // Not a cache: the next identical query goes downstream again.
    send(&url, "GET", "/api/v1/query", "query=up&time=1700003600", "");
    assert_eq!(downstream.requests().len(), 2);
}

/// A client that opens a connection to the TLS door and sends half a handshake, or
/// plain HTTP, is dropped (after `web.read_header_timeout` at most) and costs the
/// others nothing.
#[test]
fn stalled_or_plain_connections_to_the_tls_door_are_dropped() {
    use std::io::{Read as _, Write as _};
    let prometheus = demo_prometheus();
    let ca = TestCa::new().unwrap();
    let door = ca.web_config("web.yml", None).unwrap();
    let proxy = TestProxy::start(
        &format!(
            "web:\n  config_file: {}\n  read_header_timeout: 1s\n",
            door.display()
        ),
        &prometheus.url(),
    );
    // (what the client sends, then waits for the server to close)
    let table: [&[u8]; 3] = [
        b"",
        b"\x16\x03\x01\x00\xff\x01",
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for sent in table {
        let mut tcp = std::net::TcpStream::connect(proxy.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        tcp.write_all(sent).unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 4096];
        let mut received = Vec::new();
        // Read until the server closes: EOF or a reset, never the read timeout.
        loop {
            match tcp.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("{sent:?}: the server kept the connection: {e}"),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{sent:?}");
        assert!(
            !String::from_utf8_lossy(&received).contains("Ready"),
            "{sent:?}: answered in clear"
        );
    }
    assert_eq!(send(&proxy.url(), "GET", "/-/healthy", "", "").status, 200);
}
