//! Shared by the integration tests: the proxy started in-process on a free loopback
//! port, and the demo Prometheus every comparison runs against.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test setup that fails must fail the test loudly"
)]

pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use sketch_proxy::config::{self, Overrides};
use sketch_proxy::state::{ConfigSource, Proxy};
use sketch_proxy_testkit::demo::{self, TEST_END, TEST_START};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use tokio::sync::oneshot;

/// Rules loaded into the demo Prometheus. The group's interval is so long that it is
/// never evaluated during a test, so `/rules` answers stay byte-stable.
pub const RULES: &str = r#"groups:
  - name: demo
    interval: 1000d
    rules:
      - record: job:demo_http_requests:rate5m
        expr: sum by (job) (rate(demo_http_requests_total[5m]))
      - alert: DemoErrorsHigh
        expr: sum(rate(demo_http_requests_total{code="500"}[5m])) > 1
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: Demo API errors are high
"#;

/// Prometheus 2.42 holding two hours of demo data from `TEST_START`, and the rules.
pub fn demo_prometheus() -> Prometheus {
    demo_prometheus_behind(None)
}

/// [`demo_prometheus`] behind a web door (TLS, basic auth) when given.
pub fn demo_prometheus_behind(web: Option<sketch_proxy_testkit::WebDoor>) -> Prometheus {
    Prometheus::start(&PrometheusOptions {
        openmetrics: Some(demo::openmetrics(TEST_START, TEST_END)),
        rules: Some(RULES.to_owned()),
        web,
        ..PrometheusOptions::default()
    })
    .expect("start Prometheus with demo data")
}

/// The proxy, serving on a free port from its own runtime thread until dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// Starts the proxy with `yaml` as its configuration file text and `upstream`
    /// as `--upstream`.
    pub fn start(yaml: &str, upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sketch-proxy.yml");
        std::fs::write(&path, yaml).unwrap();
        let source = ConfigSource {
            path: Some(path),
            overrides: Overrides {
                listen: Some("127.0.0.1:0".to_owned()),
                upstream: Some(upstream.to_owned()),
                // Tests reload over HTTP; the flag's absence is tested on its own.
                enable_lifecycle: true,
                ..Overrides::default()
            },
        };
        Self::start_with(source, dir)
    }

    /// Starts the proxy with the configuration file at `path` (which a test may rewrite
    /// and reload) and `upstream` as `--upstream`.
    pub fn start_file(path: &std::path::Path, upstream: &str) -> Self {
        let source = ConfigSource {
            path: Some(path.to_owned()),
            overrides: Overrides {
                listen: Some("127.0.0.1:0".to_owned()),
                upstream: Some(upstream.to_owned()),
                // Tests reload over HTTP; the flag's absence is tested on its own.
                enable_lifecycle: true,
                ..Overrides::default()
            },
        };
        Self::start_with(source, ())
    }

    /// Starts the proxy from `source`; `keep` lives as long as the proxy (e.g. the
    /// directory of the configuration file).
    pub fn start_with<K: Send + 'static>(source: ConfigSource, keep: K) -> Self {
        let config = source.load().unwrap_or_else(|e| panic!("{e}"));
        let proxy = Proxy::new(config.clone(), source).unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = proxy.clone();
        let thread = std::thread::spawn(move || {
            let _keep = keep;
            let runtime = sketch_proxy::tokio_runtime(Some(2)).unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                sketch_proxy::http::serve(listener, serving, async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("proxy thread reports its address");
        Self {
            addr,
            proxy,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://` or, behind a TLS door, `https://` and its address.
    pub fn url(&self) -> String {
        let scheme = if self.proxy.door.tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP answer reduced to what the tests compare (equality ignores `path` and
/// `kept`, which only the proxy sends).
#[derive(Debug, Clone, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// The `X-Answered-By` header: which path answered a query.
    pub path: Option<String>,
    /// The `X-Cache` header: how the results cache answered (`hit`, `partial`, `miss`).
    pub cache: Option<String>,
    /// The `Cache-Control` header.
    pub cache_control: Option<String>,
    /// The `X-Pushed-Down` header: what endpoints answered of a query.
    pub pushed: Option<String>,
}

impl PartialEq for Answer {
    fn eq(&self, other: &Self) -> bool {
        (self.status, &self.content_type, &self.body) == (other.status, &other.content_type, &other.body)
    }
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// Every point of a successful range answer, by (series labels as JSON, time in ms).
    pub fn range_values(&self) -> std::collections::BTreeMap<(String, i64), f64> {
        let json = self.json();
        assert_eq!(json["status"], "success", "{}", self.body);
        let mut out = std::collections::BTreeMap::new();
        for s in json["data"]["result"].as_array().unwrap() {
            for p in s["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                out.insert(
                    (s["metric"].to_string(), t),
                    p[1].as_str().unwrap().parse().unwrap(),
                );
            }
        }
        out
    }
}

/// `GET /api/v1/query` of `query` at `at_ms` through `base`, with `extra` parameters
/// (`&name=value...`).
pub fn instant(base: &str, query: &str, at_ms: i64, extra: &str) -> Answer {
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let params = format!("query={q}&time={}{extra}", at_ms as f64 / 1000.0);
    send(base, "GET", "/api/v1/query", &params, "")
}

/// Sends one request: `query` goes in the URL, a non-empty `form` in a form body.
/// `query_range` of `query` from `from_ms` to `to_ms` every `step_ms`, plus `extra`
/// parameters (`&name=value...`).
pub fn range_query(base: &str, query: &str, window: (i64, i64, i64), extra: &str) -> Answer {
    range_query_with(base, query, window, extra, &[])
}

/// [`range_query`] with request headers.
pub fn range_query_with(
    base: &str,
    query: &str,
    (from_ms, to_ms, step_ms): (i64, i64, i64),
    extra: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let params = format!(
        "query={q}&start={}&end={}&step={}{extra}",
        from_ms as f64 / 1000.0,
        to_ms as f64 / 1000.0,
        step_ms as f64 / 1000.0
    );
    send_with(base, "GET", "/api/v1/query_range", &params, "", headers)
}

pub fn send(base: &str, method: &str, path: &str, query: &str, form: &str) -> Answer {
    send_with(base, method, path, query, form, &[])
}

/// [`send`] with extra request headers.
pub fn send_with(
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let agent = sketch_proxy_testkit::http_agent();
    let url = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    let method: http::Method = method.parse().unwrap();
    let mut request = http::Request::builder().method(method).uri(&url);
    if !form.is_empty() {
        request = request.header("Content-Type", "application/x-www-form-urlencoded");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(form.as_bytes().to_vec()).unwrap();
    let mut response = agent.run(request).unwrap_or_else(|e| panic!("{url}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (path, cache, cache_control, pushed) = (
        header("x-answered-by"),
        header("x-cache"),
        header("cache-control"),
        header("x-pushed-down"),
    );
    let gzipped = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let bytes = response.body_mut().read_to_vec().unwrap();
    // Lossy: a compact answer (wire::compact) is protobuf.
    let body = if gzipped {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut raw).unwrap();
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Answer {
        status: response.status().as_u16(),
        content_type,
        body,
        path,
        cache,
        cache_control,
        pushed,
    }
}

pub fn load_config(yaml: &str) -> config::Config {
    config::load_str(yaml, &Overrides::default()).unwrap()
}

/// The real binary, killed (SIGKILL) when dropped.
pub struct Binary(pub std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `sketch-proxy` binary on a free port with `args`; waits until it serves.
pub fn start_binary(args: &[String]) -> (Binary, String) {
    start_binary_on(sketch_proxy_testkit::free_port().unwrap(), args)
}

/// Starts the `sketch-proxy` binary on `port` with `args`; waits until it serves.
pub fn start_binary_on(port: u16, args: &[String]) -> (Binary, String) {
    start_binary_with_env(port, args, &[])
}

/// Starts the `sketch-proxy` binary on `port` with `args` and the environment
/// variables `env` set; waits until it serves.
pub fn start_binary_with_env(port: u16, args: &[String], env: &[(&str, &str)]) -> (Binary, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sketch-proxy"))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let health = format!("{url}/-/healthy");
    sketch_proxy_testkit::wait_until(
        std::time::Duration::from_secs(30),
        "sketch-proxy to serve",
        || sketch_proxy_testkit::http_agent().get(&health).call().is_ok(),
    )
    .unwrap();
    (Binary(child), url)
}

/// Waits until `proxy` has delivered every sample it acknowledged to its destinations
/// and moved its queues' cursors past them: what the results cache asks before it keeps
/// an answer a late sample could change. (Its `samples_sent` metric counts a delivery
/// before the cursor moves, so polling `/metrics` left a moment when answers were still
/// not kept.)
pub fn wait_delivered(proxy: &TestProxy) {
    let ingest = proxy.proxy.ingest.as_ref().expect("ingest enabled");
    let delivered = ingest.delivery();
    sketch_proxy_testkit::wait_until(
        std::time::Duration::from_secs(60),
        "the proxy to deliver what it queued",
        delivered,
    )
    .unwrap();
}
