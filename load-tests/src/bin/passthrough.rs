//! Passthrough overhead: a Grafana-like request mix sent to a real Prometheus directly
//! and through the `sketch-proxy` binary, interleaved in one run, reported as median
//! and p99 latency and the latency the proxy adds. With `--tls`, both Prometheus and
//! the proxy serve https with basic auth (each its own password; the proxy reaches
//! Prometheus over https with its own), as in production.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin passthrough -- [ROUNDS] [--tls]
//! ```

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sketch_proxy::config::{BasicAuthConfig, HttpClientConfig, Secret, TlsClientConfig};
use sketch_proxy::outbound::Outbound;
use sketch_proxy_load_tests::start_proxy_behind;
use sketch_proxy_testkit::demo::{self, TEST_END, TEST_START};
use sketch_proxy_testkit::tls::{TestCa, basic_auth};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};

/// (name, method, path, form): what a dashboard load and its panels send.
const MIX: &[(&str, &str, &str, &str)] = &[
    ("health 1+1", "POST", "/api/v1/query", "query=1%2B1&time=4"),
    ("buildinfo", "GET", "/api/v1/status/buildinfo", ""),
    (
        "label names",
        "POST",
        "/api/v1/labels",
        "start=1700000000&end=1700007200",
    ),
    (
        "label values",
        "GET",
        "/api/v1/label/instance/values?match%5B%5D=up",
        "",
    ),
    (
        "series",
        "POST",
        "/api/v1/series",
        "match%5B%5D=%7Bjob%3D%22api%22%7D&start=1700006400&end=1700007200",
    ),
    (
        "instant sum(up)",
        "POST",
        "/api/v1/query",
        "query=sum(up)&time=1700007000",
    ),
    (
        "range rate by instance, 2h/30s",
        "POST",
        "/api/v1/query_range",
        "query=sum+by+(instance)+(rate(demo_http_requests_total%5B1m%5D))&start=1700000000&end=1700007200&step=30",
    ),
    (
        "range p99 quantile_over_time, 2h/60s",
        "POST",
        "/api/v1/query_range",
        "query=quantile_over_time(0.99%2C+demo_request_duration_seconds%5B15m%5D)&start=1700000000&end=1700007200&step=60",
    ),
    (
        "range histogram_quantile, 2h/60s",
        "POST",
        "/api/v1/query_range",
        "query=histogram_quantile(0.9%2C+sum+by+(le)+(rate(demo_http_request_duration_seconds_bucket%5B5m%5D)))&start=1700000000&end=1700007200&step=60",
    ),
];

async fn timed(client: &Outbound, base: &str, item: &(&str, &str, &str, &str)) -> anyhow::Result<Duration> {
    let (name, method, path, form) = item;
    let mut request = http::Request::builder()
        .method(*method)
        .uri(format!("{base}{path}"));
    if !form.is_empty() {
        request = request.header("Content-Type", "application/x-www-form-urlencoded");
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(form.as_bytes())))?;
    let started = Instant::now();
    let response = client.request(request).await?;
    let status = response.status();
    #[expect(clippy::disallowed_methods, reason = "bounded by Limited")]
    let body = http_body_util::Limited::new(response.into_body(), 64 << 20)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .to_bytes();
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!("{name}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(elapsed)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200);
    let tls = std::env::args().any(|a| a == "--tls");
    let ca = TestCa::new()?;
    let prometheus = Prometheus::start(&PrometheusOptions {
        openmetrics: Some(demo::openmetrics(TEST_START, TEST_END)),
        web: if tls {
            Some(ca.web_door("prometheus-web.yml", "prometheus", "prom-pw")?)
        } else {
            None
        },
        ..PrometheusOptions::default()
    })?;
    // A client as the proxy's own (rustls, basic auth), for both sides.
    let client_for = |user: &str, password: &str| {
        let config = if tls {
            HttpClientConfig {
                tls_config: Some(TlsClientConfig {
                    ca_file: Some(ca.file("ca.pem")),
                    ..TlsClientConfig::default()
                }),
                basic_auth: Some(BasicAuthConfig {
                    username: user.to_owned(),
                    password: Some(Secret::new(password)),
                    password_file: None,
                }),
                ..HttpClientConfig::default()
            }
        } else {
            HttpClientConfig::default()
        };
        Outbound::new(&config, tls, None)
    };
    let mut args = vec![format!("--upstream={}", prometheus.url())];
    let proxy_door = if tls {
        Some(ca.web_door("proxy-web.yml", "grafana", "grafana-pw")?)
    } else {
        None
    };
    if let Some(door) = &proxy_door {
        let config = ca.file("sketch-proxy.yml");
        std::fs::write(
            &config,
            format!(
                "downstream:\n  tls_config:\n    ca_file: {}\n  basic_auth:\n    username: prometheus\n    password: prom-pw\n",
                ca.file("ca.pem").display()
            ),
        )?;
        args.push(format!("--config.file={}", config.display()));
        args.push(format!("--web.config.file={}", door.file.display()));
    }
    let (_proxy, proxy_url) = start_proxy_behind(
        &args,
        proxy_door
            .as_ref()
            .map(|_| basic_auth("grafana", "grafana-pw"))
            .as_deref(),
    )?;
    let direct_url = prometheus.url();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (direct_client, proxy_client) = {
        let _entered = runtime.enter();
        (
            client_for("prometheus", "prom-pw"),
            client_for("grafana", "grafana-pw"),
        )
    };
    let mut direct = vec![Vec::with_capacity(rounds); MIX.len()];
    let mut proxied = vec![Vec::with_capacity(rounds); MIX.len()];
    runtime.block_on(async {
        // Warm-up: connections, Prometheus' caches, the proxy's first-use paths.
        for item in MIX {
            timed(&direct_client, &direct_url, item).await?;
            timed(&proxy_client, &proxy_url, item).await?;
        }
        for round in 0..rounds {
            for (i, item) in MIX.iter().enumerate() {
                // Alternate which side goes first so ordering effects cancel.
                if round % 2 == 0 {
                    direct[i].push(timed(&direct_client, &direct_url, item).await?);
                    proxied[i].push(timed(&proxy_client, &proxy_url, item).await?);
                } else {
                    proxied[i].push(timed(&proxy_client, &proxy_url, item).await?);
                    direct[i].push(timed(&direct_client, &direct_url, item).await?);
                }
            }
        }
        anyhow::Ok(())
    })?;

    let mode = if tls {
        "https and basic auth on both sides"
    } else {
        "plain http"
    };
    println!("rounds: {rounds} per request kind, sequential, keep-alive, interleaved, {mode}\n");
    println!(
        "| request | direct p50 ms | proxied p50 ms | added p50 ms | added p50 % | direct p99 ms | proxied p99 ms | added p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut all_direct, mut all_proxied) = (Vec::new(), Vec::new());
    for (i, (name, ..)) in MIX.iter().enumerate() {
        direct[i].sort();
        proxied[i].sort();
        row(name, &direct[i], &proxied[i]);
        all_direct.extend(&direct[i]);
        all_proxied.extend(&proxied[i]);
    }
    all_direct.sort();
    all_proxied.sort();
    row("**whole mix**", &all_direct, &all_proxied);
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn row(name: &str, direct: &[Duration], proxied: &[Duration]) {
    let (d50, p50) = (quantile(direct, 0.5), quantile(proxied, 0.5));
    let (d99, p99) = (quantile(direct, 0.99), quantile(proxied, 0.99));
    println!(
        "| {name} | {:.3} | {:.3} | {:.3} | {:.1} | {:.3} | {:.3} | {:.3} |",
        ms(d50),
        ms(p50),
        ms(p50) - ms(d50),
        (ms(p50) / ms(d50) - 1.0) * 100.0,
        ms(d99),
        ms(p99),
        ms(p99) - ms(d99),
    );
}
