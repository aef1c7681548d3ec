//! The engine's dashboard queries over two shards against one Prometheus holding all
//! the data, same run (issue 8). The day of data of `local_eval` is split by a hash of
//! each series' `instance` (whole series per shard) into two Prometheus 2.42 servers,
//! and backfilled whole into a third. Each query is timed straight against the whole
//! Prometheus, through the release proxy over it alone (`query.mode: local`), and
//! through a proxy over the two shards (`downstream.endpoints`), and through one over
//! the two shards with `query.push_down` (issue 20), interleaved. Prints medians, the
//! ratio shards ÷ Prometheus, and the bytes the endpoints sent per query (their own
//! `prometheus_http_response_size_bytes_sum` of `/api/v1/read`, and with push-down of
//! the query endpoints too).
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

/// Bytes `prometheus` has answered remote reads with so far, and with `queries` the
/// query endpoints' answers too.
fn read_bytes(prometheus: &Prometheus, queries: bool) -> anyhow::Result<f64> {
    let (metrics, _) = get(&format!("{}/metrics", prometheus.url()))?;
    let handlers: &[&str] = if queries {
        &["/api/v1/read", "/api/v1/query", "/api/v1/query_range"]
    } else {
        &["/api/v1/read"]
    };
    let mut sum = 0.0;
    for handler in handlers {
        let prefix = format!(r#"prometheus_http_response_size_bytes_sum{{handler="{handler}"}} "#);
        if let Some(value) = metrics.lines().find_map(|l| l.strip_prefix(prefix.as_str())) {
            sum += value.parse::<f64>().context("metric value")?;
        }
    }
    Ok(sum)
}

/// Bytes both shards have answered so far (see [`read_bytes`]).
fn shards_bytes(shards: &[Prometheus; 2], queries: bool) -> anyhow::Result<f64> {
    Ok(read_bytes(&shards[0], queries)? + read_bytes(&shards[1], queries)?)
}

/// A proxy evaluating every query over `endpoints`, with `config` as its file.
fn proxy_over(
    endpoints: &[&Prometheus],
    config: &std::path::Path,
) -> anyhow::Result<(sketch_proxy_load_tests::ProxyProcess, String)> {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|p| format!("--endpoint={}", p.url()))
        .collect();
    args.push("--query.mode=local".to_owned());
    args.push(format!("--config.file={}", config.display()));
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
    // Results caches off: every run evaluates.
    let dir = tempfile::tempdir()?;
    let (plain, pushing) = (dir.path().join("plain.yml"), dir.path().join("pushing.yml"));
    std::fs::write(&plain, "cache:\n  enabled: false\n")?;
    std::fs::write(&pushing, "cache:\n  enabled: false\nquery:\n  push_down: true\n")?;
    let (_one, one_url) = proxy_over(&[&whole], &plain)?;
    let (_two, two_url) = proxy_over(&[&shards[0], &shards[1]], &plain)?;
    let (_pushed, pushed_url) = proxy_over(&[&shards[0], &shards[1]], &pushing)?;
    println!(
        "| query | Prometheus | proxy over it | proxy over 2 shards | pushing down | shards ÷ Prometheus | pushing ÷ Prometheus | KiB read, one | KiB read, shards | KiB read, pushing |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for query in QUERIES {
        let q = encode_query(query);
        let path = format!(
            "/api/v1/query_range?query={q}&start={}&end={}&step=60",
            START + 3600,
            START + DAY
        );
        let (direct_body, _) = get(&format!("{}{path}", whole.url()))?;
        let before = (read_bytes(&whole, false)?, shards_bytes(&shards, false)?);
        let (one_body, _) = get(&format!("{one_url}{path}"))?;
        let (two_body, _) = get(&format!("{two_url}{path}"))?;
        let after = (read_bytes(&whole, false)?, shards_bytes(&shards, false)?);
        let before_pushing = shards_bytes(&shards, true)?;
        let (pushed_body, _) = get(&format!("{pushed_url}{path}"))?;
        let pushing_bytes = shards_bytes(&shards, true)? - before_pushing;
        if one_body != two_body || series_count(&direct_body) != series_count(&two_body) {
            bail!("{query}: the answer over two shards differs");
        }
        if !same_values(&pushed_body, &two_body)? {
            bail!("{query}: the pushed-down answer differs");
        }
        let (mut direct, mut one, mut two, mut pushed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            direct.push(time(&format!("{}{path}", whole.url()))?);
            one.push(time(&format!("{one_url}{path}"))?);
            two.push(time(&format!("{two_url}{path}"))?);
            pushed.push(time(&format!("{pushed_url}{path}"))?);
        }
        let (d, o, t, p) = (
            median(&mut direct),
            median(&mut one),
            median(&mut two),
            median(&mut pushed),
        );
        println!(
            "| `{query}` | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            d.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3,
            t.as_secs_f64() / d.as_secs_f64(),
            p.as_secs_f64() / d.as_secs_f64(),
            (after.0 - before.0) / 1024.0,
            (after.1 - before.1) / 1024.0,
            pushing_bytes / 1024.0,
        );
    }
    Ok(())
}

fn series_count(body: &str) -> usize {
    body.matches("\"metric\"").count()
}

/// Whether two range answers hold the same series and steps, values within 1e-9
/// relative (a pushed `avg` or `stddev` merges partial means).
fn same_values(a: &str, b: &str) -> anyhow::Result<bool> {
    let points = |body: &str| -> anyhow::Result<Vec<(String, String, f64)>> {
        let json: serde_json::Value = serde_json::from_str(body)?;
        let mut out = Vec::new();
        for s in json["data"]["result"].as_array().context("no result")? {
            for p in s["values"].as_array().context("no values")? {
                let v: f64 = p[1].as_str().context("a value")?.parse()?;
                out.push((s["metric"].to_string(), p[0].to_string(), v));
            }
        }
        out.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        Ok(out)
    };
    let (a, b) = (points(a)?, points(b)?);
    Ok(a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x.0 == y.0 && x.1 == y.1 && (x.2 == y.2 || (x.2 - y.2).abs() <= 1e-9 * y.2.abs().max(1.0))
        }))
}
