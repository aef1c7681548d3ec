//! Reported: wasmtime-wasi's synchronous WASI blocks on a tokio runtime of its own, which
//! panics on a thread running async tasks. A plugin whose `info` wrote to stderr
//! stopped the proxy from starting, and one that wrote to stderr and panicked in
//! `create` (called from the remote-write handler) panicked a worker thread instead of
//! being quarantined. Plugin calls now run on the host's call pool, outside tokio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod guest_support;
mod support;

use sketch_proxy::config::Overrides;
use sketch_proxy::state::{ConfigSource, Proxy};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};
use support::write;

/// Everything runs inside a tokio runtime's tasks, as in the binary: loading the
/// plugins, the remote write that creates the sketch, the queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_writes_to_stderr_and_panics_is_quarantined_and_the_proxy_keeps_serving() {
    let prometheus = tokio::task::spawn_blocking(|| Prometheus::start(&PrometheusOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(guest_support::guest_path("noisy"), plugins.join("noisy.wasm")).unwrap();
    let path = dir.path().join("sketch-proxy.yml");
    std::fs::write(
        &path,
        format!(
            "plugins:\n  dir: {}\ningest:\n  enabled: true\n  queue_dir: {}\n\
             sketches:\n  backfill: false\n  rules:\n    - match: noisy_metric\n      functions: [noisy_over_time]\n      retain: 1h\n",
            plugins.display(),
            dir.path().join("queue").display()
        ),
    )
    .unwrap();
    let source = ConfigSource {
        path: Some(path),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            upstream: Some(prometheus.url()),
            ..Overrides::default()
        },
    };
    let config = source.load().unwrap();
    // `info` writes to stderr here, inside a task.
    let proxy = Proxy::new(config, source).unwrap();
    assert!(
        proxy.runtime().plugins.by_name("noisy").is_some(),
        "a plugin that writes to stderr in info loads"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sketch_proxy::http::serve(listener, proxy.clone(), async {
        let _ = stopped.await;
    }));

    let blocking = |f: Box<dyn FnOnce() -> support::Answer + Send>| tokio::task::spawn_blocking(f);
    let data = write::generate("noisy_metric", 3, 5, write::now_ms() - 10_000, 1000, 1);
    let written = {
        let url = url.clone();
        blocking(Box::new(move || write::post(&url, &data)))
            .await
            .unwrap()
    };
    assert_eq!(written.status, 204, "{}", written.body);
    let metrics = {
        let url = url.clone();
        blocking(Box::new(move || support::send(&url, "GET", "/metrics", "", "")))
            .await
            .unwrap()
    };
    let quarantined = metrics.body.lines().any(|l| {
        l.starts_with("sketch_proxy_plugin_quarantines_total{plugin=\"noisy\"") && !l.ends_with(" 0")
    });
    assert!(quarantined, "{}", metrics.body);
    let query = {
        let url = url.clone();
        blocking(Box::new(move || {
            support::send(&url, "GET", "/api/v1/query", "query=count(noisy_metric)", "")
        }))
        .await
        .unwrap()
    };
    assert_eq!(query.status, 200, "{}", query.body);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
