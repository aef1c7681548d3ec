//! Sketches at scale (issue 17): 10,000 series × 24 h at a 10 s scrape (half lognormal
//! latencies, half Zipf-distributed ids) remote-written through the release proxy
//! under one rule for all four built-in functions, and forwarded into a real
//! Prometheus 2.42. Reports:
//! - the ingest rate (samples acknowledged per second);
//! - the proxy's peak RSS and the sketches' bytes per sample;
//! - a P1-style 24 h panel of `quantile_over_time(0.99, m[1h])` over 100 of the series,
//!   against Prometheus;
//! - after SIGTERM, the time from the restart to serving from sketches again.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin scale -- [SERIES]
//! ```

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sketch_proxy_load_tests::mixed::{SCRAPE_MS, encode};
use sketch_proxy_load_tests::{
    ProxyProcess, count_samples, encode_query, get, median, rss_bytes, sketch_memory_bytes, sketching_config,
    start_proxy, time,
};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, wait_until};

const HOURS: i64 = 24;
/// Samples per series in one request: 30 minutes, in time order across all series.
const SLICE: usize = 180;
/// Series per request.
const SERIES_PER_REQUEST: usize = 1_000;
const PANEL_RUNS: usize = 3;

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let series: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sketching_config(dir.path(), "m", "26h", &[])?;
    let args = [
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ];
    let (proxy, url) = start_proxy(&args)?;
    let pid = proxy.0.id();

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let samples = (HOURS * 3_600_000 / SCRAPE_MS) as usize;
    let start = (now - HOURS * 3_600_000) / 60_000 * 60_000;
    let total = series * samples;
    println!("writing {series} series × {samples} samples ({total} samples) through the proxy");
    let rss_before = rss_bytes(pid)?;
    let mut peak = rss_before;
    let started = Instant::now();
    for from in (0..samples).step_by(SLICE) {
        let to = (from + SLICE).min(samples);
        for first in (0..series).step_by(SERIES_PER_REQUEST) {
            let body = encode(start, first..(first + SERIES_PER_REQUEST).min(series), from, to);
            sketch_proxy_load_tests::post_write_body(&url, &body)?;
        }
        peak = peak.max(rss_bytes(pid)?);
    }
    let written = started.elapsed();
    println!(
        "ingest: {:.0} samples/s acknowledged ({:.0} s)",
        total as f64 / written.as_secs_f64(),
        written.as_secs_f64()
    );
    let end = start + (samples as i64 - 1) * SCRAPE_MS;
    wait_until(
        Duration::from_secs(1800),
        "Prometheus to hold every sample",
        || count_samples(&prometheus.url(), end).is_ok_and(|n| n == total),
    )?;
    println!(
        "delivered to Prometheus {:.0} s after the first write",
        started.elapsed().as_secs_f64()
    );
    let counted = sketch_memory_bytes(&url)?;
    let rss = rss_bytes(pid)?;
    peak = peak.max(rss);
    println!(
        "sketches: {:.0} MB as the plugins count, {:.2} B per sample; proxy RSS {:.0} MB (peak {:.0} MB, {:.2} B per sample over the start)",
        counted as f64 / 1e6,
        counted as f64 / total as f64,
        rss as f64 / 1e6,
        peak as f64 / 1e6,
        (rss.saturating_sub(rss_before)) as f64 / total as f64
    );

    // P1-style: a 24 h panel of 1 h windows over 100 of the series.
    let query = "quantile_over_time(0.99, m{series=~\"s000..\"}[1h])";
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        encode_query(query),
        (start + 3_600_000) as f64 / 1000.0,
        end as f64 / 1000.0
    );
    let (_, served) = get(&format!("{url}{path}"))?;
    println!(
        "panel answered by the proxy's {}",
        served.as_deref().unwrap_or("?")
    );
    let mut proxied = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..PANEL_RUNS {
        direct.push(time(&format!("{}{path}", prometheus.url()))?);
        proxied.push(time(&format!("{url}{path}"))?);
    }
    let (d, p) = (median(&mut direct), median(&mut proxied));
    println!(
        "P1-style panel over 100 series: Prometheus {:.0} ms, proxy {:.1} ms ({:.0}×)",
        d.as_secs_f64() * 1000.0,
        p.as_secs_f64() * 1000.0,
        d.as_secs_f64() / p.as_secs_f64()
    );

    // Restart: SIGTERM (the proxy snapshots on the way out), then time to serving.
    let stopping = Instant::now();
    terminate(proxy)?;
    let snapshot = dir.path().join("sketches").join("sketches.snap");
    println!(
        "SIGTERM to exit: {:.1} s; snapshot {:.0} MB",
        stopping.elapsed().as_secs_f64(),
        std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
    let restarted = Instant::now();
    let (proxy, url) = start_proxy(&args)?;
    let pid = proxy.0.id();
    let mut restore_peak = 0;
    wait_until(
        Duration::from_secs(1800),
        "the restarted proxy to serve from sketches",
        || {
            restore_peak = restore_peak.max(rss_bytes(pid).unwrap_or(0));
            serving(&url).unwrap_or(false)
        },
    )?;
    let (_, served) = get(&format!("{url}{path}"))?;
    println!(
        "restart to serving from sketches: {:.1} s (panel answered by the {}; RSS during the restore up to {:.0} MB)",
        restarted.elapsed().as_secs_f64(),
        served.as_deref().unwrap_or("?"),
        restore_peak as f64 / 1e6
    );
    drop(proxy);
    Ok(())
}

/// Restored, and every rule's backfill done.
fn serving(url: &str) -> anyhow::Result<bool> {
    let (body, _) = get(&format!("{url}/api/v1/status/sketches"))?;
    let status: serde_json::Value = serde_json::from_str(&body)?;
    let data = &status["data"];
    let rules = data["rules"]
        .as_array()
        .context("no rules in the sketch status")?;
    Ok(data["restore"]["state"] == "done"
        && !rules.is_empty()
        && rules.iter().all(|r| r["backfill"]["state"] == "done"))
}

fn terminate(mut proxy: ProxyProcess) -> anyhow::Result<()> {
    let pid = proxy.0.id().to_string();
    if !Command::new("kill").args(["-TERM", &pid]).status()?.success() {
        bail!("kill -TERM {pid} failed");
    }
    let exit = proxy.0.wait()?;
    if !exit.success() {
        bail!("the proxy exited with {exit} on SIGTERM");
    }
    Ok(())
}
