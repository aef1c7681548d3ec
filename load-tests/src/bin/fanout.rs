//! The engine's dashboard queries over two shards against one Prometheus holding all
//! the data, same run (issue 8). The day of data of `local_eval` is split by a hash of
//! each series' `instance` (whole series per shard) into two Prometheus 2.42 servers,
//! and backfilled whole into a third. Each query is timed straight against the whole
//! Prometheus, through the release proxy over it alone (`query.mode: local`), and
//! through a proxy over the two shards (`downstream.endpoints`), interleaved. Prints
//! medians, the ratio shards ÷ Prometheus, and the bytes the endpoints sent per query
//! (their own `prometheus_http_response_size_bytes_sum{handler="/api/v1/read"}`).
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin fanout -- [RUNS]
//! ```

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::time::Instant;

use anyhow::{Context as _, bail};
use sketch_proxy_load_tests::dashboard::{DAY, QUERIES, START, openmetrics_of};
use sketch_proxy_load_tests::{encode_query, get, median, runs_arg, start_proxy, time};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};

/// The shard (0 or 1) of the series with `instance="host-{i}"`.
fn shard_of(i: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    format!("host-{i}").hash(&mut hasher);
    (hasher.finish() % 2) as usize
}

fn start(keep: impl Fn(usize) -> bool) -> anyhow::Result<Prometheus> {
    Prometheus::start(&PrometheusOptions {
        openmetrics: Some(openmetrics_of(keep)),
        ..PrometheusOptions::default()
    })
}

/// Bytes `prometheus` has answered remote reads with so far.
fn read_bytes(prometheus: &Prometheus) -> anyhow::Result<f64> {
    let (metrics, _) = get(&format!("{}/metrics", prometheus.url()))?;
    let line = metrics
        .lines()
        .find(|l| l.starts_with(r#"prometheus_http_response_size_bytes_sum{handler="/api/v1/read"}"#))
        .unwrap_or(r#"prometheus_http_response_size_bytes_sum{handler="/api/v1/read"} 0"#);
    line.rsplit(' ')
        .next()
        .context("metric line without a value")?
        .parse()
        .context("metric value")
}

fn proxy_over(endpoints: &[&Prometheus]) -> anyhow::Result<(sketch_proxy_load_tests::ProxyProcess, String)> {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|p| format!("--endpoint={}", p.url()))
        .collect();
    args.push("--query.mode=local".to_owned());
    start_proxy(&args)
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let runs = runs_arg()?;
    let started = Instant::now();
    let whole = start(|_| true)?;
    let shards = [start(|i| shard_of(i) == 0)?, start(|i| shard_of(i) == 1)?];
    println!(
        "backfilled and started three servers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (_one, one_url) = proxy_over(&[&whole])?;
    let (_two, two_url) = proxy_over(&[&shards[0], &shards[1]])?;
    println!(
        "| query | Prometheus | proxy over it | proxy over 2 shards | shards ÷ Prometheus | KiB read, one | KiB read, shards |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for query in QUERIES {
        let q = encode_query(query);
        let path = format!(
            "/api/v1/query_range?query={q}&start={}&end={}&step=60",
            START + 3600,
            START + DAY
        );
        let (direct_body, _) = get(&format!("{}{path}", whole.url()))?;
        let before = (
            read_bytes(&whole)?,
            read_bytes(&shards[0])? + read_bytes(&shards[1])?,
        );
        let (one_body, _) = get(&format!("{one_url}{path}"))?;
        let (two_body, _) = get(&format!("{two_url}{path}"))?;
        let after = (
            read_bytes(&whole)?,
            read_bytes(&shards[0])? + read_bytes(&shards[1])?,
        );
        if one_body != two_body || series_count(&direct_body) != series_count(&two_body) {
            bail!("{query}: the answer over two shards differs");
        }
        let (mut direct, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            direct.push(time(&format!("{}{path}", whole.url()))?);
            one.push(time(&format!("{one_url}{path}"))?);
            two.push(time(&format!("{two_url}{path}"))?);
        }
        let (d, o, t) = (median(&mut direct), median(&mut one), median(&mut two));
        println!(
            "| `{query}` | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {:.0} | {:.0} |",
            d.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / d.as_secs_f64(),
            (after.0 - before.0) / 1024.0,
            (after.1 - before.1) / 1024.0,
        );
    }
    Ok(())
}

fn series_count(body: &str) -> usize {
    body.matches("\"metric\"").count()
}
