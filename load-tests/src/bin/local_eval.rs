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

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::bail;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use sketch_proxy_load_tests::{encode_query, get, median, runs_arg, start_proxy, time};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions};

const START: i64 = 1_700_000_000;
const DAY: i64 = 86_400;
const SCRAPE: i64 = 10;
const SERIES: usize = 100;
const HISTOGRAMS: usize = 10;
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

const QUERIES: [&str; 6] = [
    "count_over_time(bench_requests_total[1d])",
    "count_over_time(bench_latency_seconds[1d])",
    "rate(bench_requests_total[5m])",
    "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_duration_seconds_bucket[5m])))",
    "quantile_over_time(0.99, bench_latency_seconds[1h])",
];

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

/// The day of data, in OpenMetrics text for `promtool tsdb create-blocks-from`.
fn openmetrics() -> String {
    let mut out = String::with_capacity(400 << 20);
    let mut rng = StdRng::seed_from_u64(7);
    let latency = LogNormal::new(-3.0, 0.8).unwrap_or_else(|_| unreachable!("valid parameters"));
    let times: Vec<i64> = (START..START + DAY).step_by(SCRAPE as usize).collect();
    out.push_str("# TYPE bench_requests counter\n");
    for s in 0..SERIES {
        let mut value = 0.0_f64;
        for &t in &times {
            value += rng.random_range(0.0..100.0_f64).round();
            let _ = writeln!(
                out,
                "bench_requests_total{{instance=\"host-{s}\",job=\"job-{}\"}} {value} {t}",
                s % 5
            );
        }
    }
    out.push_str("# TYPE bench_latency_seconds gauge\n");
    for s in 0..SERIES {
        for &t in &times {
            let v: f64 = latency.sample(&mut rng);
            let _ = writeln!(out, "bench_latency_seconds{{instance=\"host-{s}\"}} {v} {t}");
        }
    }
    out.push_str("# TYPE bench_duration_seconds histogram\n");
    for h in 0..HISTOGRAMS {
        let mut counts = [0u64; BUCKETS.len() + 1];
        let mut sum = 0.0;
        let mut lines = String::new();
        for &t in &times {
            for _ in 0..5 {
                let v: f64 = latency.sample(&mut rng);
                sum += v;
                counts[BUCKETS.iter().position(|b| v <= *b).unwrap_or(BUCKETS.len())] += 1;
            }
            let mut cumulative = 0;
            for (b, le) in BUCKETS.iter().enumerate() {
                cumulative += counts[b];
                let _ = writeln!(
                    lines,
                    "bench_duration_seconds_bucket{{instance=\"host-{h}\",le=\"{le}\"}} {cumulative} {t}"
                );
            }
            cumulative += counts[BUCKETS.len()];
            let _ = writeln!(
                lines,
                "bench_duration_seconds_bucket{{instance=\"host-{h}\",le=\"+Inf\"}} {cumulative} {t}"
            );
            let _ = writeln!(
                lines,
                "bench_duration_seconds_count{{instance=\"host-{h}\"}} {cumulative} {t}"
            );
            let _ = writeln!(
                lines,
                "bench_duration_seconds_sum{{instance=\"host-{h}\"}} {sum} {t}"
            );
        }
        out.push_str(&lines);
    }
    out.push_str("# EOF\n");
    out
}
