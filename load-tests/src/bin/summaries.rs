//! Week-long windows from the stats plugin's summaries against Prometheus 2.42 and
//! VictoriaMetrics 1.79, in one run (issue 22): 100 series × 7 days at a 10 s scrape
//! (the `mixed` data set, and an hour before it so that the sketches cover every
//! window) are remote-written through the release proxy, which sketches
//! them for the stats functions and forwards them into Prometheus; the same requests
//! go to VictoriaMetrics (rollup cache off). Then, repeated and interleaved, instant
//! `avg_over_time(m[7d])` and `max_over_time(m[7d])` over all 100 series at the newest
//! sample: the three servers' medians, the speed-ups, and the largest relative
//! difference of the proxy's answers from Prometheus'. And a 24 h panel of
//! `rate(c[1h])` at a 60 s step over 100 counters (the last 26 hours; each restarts
//! every 3.5 days) from the stats plugin's sliding windows against Prometheus, whose
//! answers must be equal to the bit.
//!
//! ```sh
//! cargo build --release -p sketch-proxy -p sketch-proxy-load-tests
//! target/release/summaries [RUNS]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sketch_proxy_load_tests::mixed::{SCRAPE_MS, counter_values, encode, encode_named};
use sketch_proxy_load_tests::{
    count_metric_over, count_samples_over, encode_query, get, median, post_write_body, runs_arg, start_proxy,
    time,
};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, VictoriaMetrics, wait_until};

const SERIES: usize = 100;
const DAYS: i64 = 7;
/// Samples per series in one remote-write request (30 minutes).
const SLICE: usize = 180;
const QUERIES: [&str; 2] = ["avg_over_time(m[7d])", "max_over_time(m[7d])"];
/// The counters span the panel's day and the window before it, and an hour more.
const COUNTER_SPAN_MS: i64 = 26 * 3_600_000;
const PANEL: &str = "rate(c[1h])";

/// Every value of an instant answer, by series.
fn values(body: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let json: serde_json::Value = serde_json::from_str(body)?;
    let mut out = BTreeMap::new();
    for s in json["data"]["result"].as_array().context("no result")? {
        let v: f64 = s["value"][1].as_str().context("a value")?.parse()?;
        out.insert(s["metric"].to_string(), v);
    }
    Ok(out)
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let runs = runs_arg()?;
    let prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let victoria = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sketch-proxy.yml");
    std::fs::write(
        &config,
        format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\n  max_queue_bytes: 4294967296\n\
             sketches:\n  max_series: 1000\n  rules:\n    - match: m\n      \
             functions: [avg_over_time, max_over_time]\n      retain: 8d\n      complete: true\n\
                 \x20   - match: c\n      functions: [rate]\n      retain: 27h\n      complete: true\n\
             cache:\n  enabled: false\n",
            dir.path().join("queue").display()
        ),
    )?;
    let (_proxy, proxy_url) = start_proxy(&[
        format!("--config.file={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    // A week and an hour: a window must lie within what the sketches cover.
    let span_ms = DAYS * 86_400_000 + 3_600_000;
    let samples = (span_ms / SCRAPE_MS) as usize;
    let start = (now - span_ms) / 60_000 * 60_000 + 60_000;
    let end = start + (samples as i64 - 1) * SCRAPE_MS;
    println!("writing {SERIES} series × {samples} samples through the proxy and to VictoriaMetrics");
    let started = Instant::now();
    for from in (0..samples).step_by(SLICE) {
        let to = (from + SLICE).min(samples);
        let body = encode(start, 0..SERIES, from, to);
        post_write_body(&proxy_url, &body)?;
        post_write_body(&victoria.url(), &body)?;
        if (samples - from) as i64 * SCRAPE_MS <= COUNTER_SPAN_MS {
            let counters = encode_named("c", counter_values, start, 0..SERIES, from, to);
            post_write_body(&proxy_url, &counters)?;
            post_write_body(&victoria.url(), &counters)?;
        }
        // Prometheus refuses samples more than an hour behind its newest: one slice at
        // a time.
        let last = start + (to as i64 - 1) * SCRAPE_MS;
        let window = format!("{}s", (to - from) as i64 * SCRAPE_MS / 1000 - 1);
        wait_until(Duration::from_secs(120), "Prometheus to hold the slice", || {
            count_samples_over(&prometheus.url(), last, &window).is_ok_and(|n| n == SERIES * (to - from))
        })?;
    }
    let counted = SERIES * (COUNTER_SPAN_MS / SCRAPE_MS) as usize;
    wait_until(
        Duration::from_secs(120),
        "Prometheus to hold the counters",
        || count_metric_over(&prometheus.url(), "c", end, "27h").is_ok_and(|n| n == counted),
    )?;
    victoria.flush()?;
    wait_until(
        Duration::from_secs(120),
        "VictoriaMetrics to hold every sample",
        || count_samples_over(&victoria.url(), end, "8d").is_ok_and(|n| n == SERIES * samples),
    )?;
    println!(
        "written and delivered in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    println!();
    println!(
        "| instant query, {SERIES} series × 7 d | Prometheus | VictoriaMetrics | proxy (summaries) | over Prometheus | over VictoriaMetrics | largest relative difference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for query in QUERIES {
        let path = format!(
            "/api/v1/query?query={}&time={}",
            encode_query(query),
            end as f64 / 1000.0
        );
        let (exact_body, _) = get(&format!("{}{path}", prometheus.url()))?;
        let (proxy_body, served) = get(&format!("{proxy_url}{path}"))?;
        if served.as_deref() != Some("sketch") {
            bail!("{query}: the proxy answered by {served:?}, not from sketches");
        }
        let (exact, sketched) = (values(&exact_body)?, values(&proxy_body)?);
        if exact.len() != SERIES || exact.keys().ne(sketched.keys()) {
            bail!(
                "{query}: {} series from Prometheus, {} from the proxy",
                exact.len(),
                sketched.len()
            );
        }
        let worst = exact
            .iter()
            .map(|(k, e)| ((sketched[k] - e) / e).abs())
            .fold(0.0_f64, f64::max);
        let (mut p, mut v, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            p.push(time(&format!("{}{path}", prometheus.url()))?);
            v.push(time(&format!("{}{path}", victoria.url()))?);
            s.push(time(&format!("{proxy_url}{path}"))?);
        }
        let (p, v, s) = (median(&mut p), median(&mut v), median(&mut s));
        println!(
            "| `{query}` | {:.0} ms | {:.0} ms | {:.1} ms | {:.0}× | {:.0}× | {:.1e} |",
            p.as_secs_f64() * 1e3,
            v.as_secs_f64() * 1e3,
            s.as_secs_f64() * 1e3,
            p.as_secs_f64() / s.as_secs_f64(),
            v.as_secs_f64() / s.as_secs_f64(),
            worst
        );
    }
    rate_panel(&prometheus.url(), &victoria.url(), &proxy_url, end, runs)
}

/// The 24 h panel of [`PANEL`] ending at `end`: equal to Prometheus' to the bit, and
/// the three servers' medians.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn rate_panel(prometheus: &str, victoria: &str, proxy: &str, end: i64, runs: usize) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60",
        encode_query(PANEL),
        (end - 86_400_000) as f64 / 1000.0,
        end as f64 / 1000.0
    );
    let (exact, _) = get(&format!("{prometheus}{path}"))?;
    let (sketched, served) = get(&format!("{proxy}{path}"))?;
    if served.as_deref() != Some("sketch") {
        bail!("{PANEL}: the proxy answered by {served:?}, not from sketches");
    }
    let (exact, sketched) = (range_values(&exact)?, range_values(&sketched)?);
    if exact.len() < SERIES * 1_400 || exact != sketched {
        let differ = exact.iter().filter(|(k, v)| sketched.get(*k) != Some(v)).count();
        bail!(
            "{PANEL}: {} points from Prometheus, {} from the proxy, {differ} differ",
            exact.len(),
            sketched.len()
        );
    }
    let (mut p, mut v, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        p.push(time(&format!("{prometheus}{path}"))?);
        v.push(time(&format!("{victoria}{path}"))?);
        s.push(time(&format!("{proxy}{path}"))?);
    }
    let (p, v, s) = (median(&mut p), median(&mut v), median(&mut s));
    println!();
    println!(
        "| 24 h panel, 60 s step, {SERIES} counters | Prometheus | VictoriaMetrics | proxy (stats plugin) | over Prometheus | points equal to Prometheus' |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| `{PANEL}` | {:.0} ms | {:.0} ms | {:.0} ms | {:.1}× | all {} |",
        p.as_secs_f64() * 1e3,
        v.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        p.as_secs_f64() / s.as_secs_f64(),
        exact.len()
    );
    Ok(())
}

/// Every point of a range answer as Prometheus printed it, by series and time.
fn range_values(body: &str) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let json: serde_json::Value = serde_json::from_str(body)?;
    let mut out = BTreeMap::new();
    for s in json["data"]["result"].as_array().context("no result")? {
        for p in s["values"].as_array().context("no values")? {
            let value = p[1].as_str().context("a value")?.to_owned();
            out.insert((s["metric"].to_string(), p[0].to_string()), value);
        }
    }
    Ok(out)
}
