//! Local evaluation against Prometheus' own, same data, same run: a day of 100 series at
//! a 10 s scrape (counters, gauges, and 10 classic histograms of 11 buckets), backfilled
//! into a real Prometheus 2.42. Common 24 h dashboard queries at a 60 s step are timed
//! straight against Prometheus and through the release proxy in `query.mode: local`
//! (remote read, evaluation and encoding included), interleaved. Prints medians and the
//! ratio proxy ÷ Prometheus.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin local_eval -- [RUNS]
//! ```

use std::time::Instant;

use anyhow::bail;
use sketch_proxy_load_tests::dashboard::{DAY, HISTOGRAMS, QUERIES, SCRAPE, SERIES, START, openmetrics};
use sketch_proxy_load_tests::{encode_query, get, median, runs_arg, start_proxy, time};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let runs = runs_arg()?;
    println!(
        "generating a day of {SERIES} counters, {SERIES} gauges and {HISTOGRAMS} histograms at {SCRAPE} s"
    );
    let started = Instant::now();
    let prometheus = Prometheus::start(&PrometheusOptions {
        openmetrics: Some(openmetrics()),
        ..PrometheusOptions::default()
    })?;
    println!(
        "backfilled and started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(&config, "query:\n  mode: local\n")?;
    let (_proxy, proxy_url) = start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;
    println!("| query | Prometheus median | proxy local median | ratio |");
    println!("|---|---:|---:|---:|");
    for query in QUERIES {
        let q: String = encode_query(query);
        let path = format!(
            "/api/v1/query_range?query={q}&start={}&end={}&step=60",
            START + 3600,
            START + DAY
        );
        // One untimed round each to warm caches, then interleaved timed rounds.
        let (direct_body, _) = get(&format!("{}{path}", prometheus.url()))?;
        let (local_body, _) = get(&format!("{proxy_url}{path}"))?;
        if series_count(&direct_body) != series_count(&local_body) {
            bail!("{query}: answers differ in series count");
        }
        let (mut direct, mut local) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            direct.push(time(&format!("{}{path}", prometheus.url()))?);
            local.push(time(&format!("{proxy_url}{path}"))?);
        }
        let (d, l) = (median(&mut direct), median(&mut local));
        println!(
            "| `{query}` | {:.0} ms | {:.0} ms | {:.2} |",
            d.as_secs_f64() * 1e3,
            l.as_secs_f64() * 1e3,
            l.as_secs_f64() / d.as_secs_f64()
        );
    }
    Ok(())
}

fn series_count(body: &str) -> usize {
    body.matches("\"metric\"").count()
}
