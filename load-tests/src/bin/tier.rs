//! A tier of sketch-proxies against one proxy holding everything, in one run (issue 20).
//! 300 series × 24 h at a 10 s scrape (the `mixed` data set) are remote-written:
//! - to one release proxy sketching them all in front of its own Prometheus 2.42;
//! - to a front proxy that shards remote write over three leaf proxies by rendezvous
//!   hashing (`ingest.destinations`), each sketching its share in front of its own
//!   Prometheus. A top proxy lists the leaves as `kind: sketch_proxy` endpoints with
//!   `query.push_down`, and a second top proxy reads their raw data (no push-down).
//!
//! Results caches are off in every proxy, so each panel is computed. Reports P1 (the
//! 24 h panel of `quantile_over_time(0.99, m[1h])` at a 60 s step over all 300 series)
//! on the single proxy and the top proxy, interleaved, and the bytes one panel moves out
//! of the leaves: their JSON answers to the pushed query, against the raw chunks the
//! leaves' Prometheus servers send the raw-reading top (their own
//! `prometheus_http_response_size_bytes_sum{handler="/api/v1/read"}`). Checks that the
//! tier's answer equals the single proxy's.
//!
//! ```sh
//! cargo build --release -p sketch-proxy -p sketch-proxy-load-tests
//! target/release/tier [RUNS]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sketch_proxy_load_tests::mixed::{SCRAPE_MS, encode};
use sketch_proxy_load_tests::{
    ProxyProcess, count_samples, encode_query, get, median, post_write_body, runs_arg, sketching_config,
    start_proxy, time,
};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, http_agent, wait_until};

const SERIES: usize = 300;
const LEAVES: usize = 3;
const HOURS: i64 = 24;
/// Samples per series in one remote-write request (30 minutes).
const SLICE: usize = 180;
const P1: &str = "quantile_over_time(0.99, m[1h])";
const NO_CACHE: &str = "cache:\n  enabled: false\n";

/// A sketching proxy in `dir` in front of `prometheus`, results cache off.
fn sketching(dir: &Path, prometheus: &Prometheus) -> anyhow::Result<(ProxyProcess, String)> {
    std::fs::create_dir_all(dir)?;
    let config = sketching_config(dir, "m", "26h", &[])?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(NO_CACHE);
    std::fs::write(&config, text)?;
    start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])
}

/// A proxy started from the configuration `yaml`, written into `dir`.
fn configured(dir: &Path, yaml: &str, upstream: &str) -> anyhow::Result<(ProxyProcess, String)> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join("sketch-proxy.yml");
    std::fs::write(&config, yaml)?;
    start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={upstream}"),
    ])
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

/// Bytes of the body of `url` on the wire, asked as a top proxy asks a leaf.
fn wire_bytes(url: &str) -> anyhow::Result<usize> {
    let accept = format!(
        "{}, application/json;q=0.5",
        sketch_proxy::api::wire::compact::MEDIA_TYPE
    );
    let mut response = http_agent()
        .get(url)
        .header("Accept", accept.as_str())
        .header("Accept-Encoding", "gzip")
        .call()?;
    let encoding = response.headers().get("content-encoding").cloned();
    let compact = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes() == sketch_proxy::api::wire::compact::MEDIA_TYPE.as_bytes());
    let bytes = response.body_mut().with_config().limit(1 << 30).read_to_vec()?;
    if encoding.is_none_or(|e| e != "gzip") || !compact {
        bail!("{url}: the answer is not a gzip-compressed compact one");
    }
    Ok(bytes.len())
}

/// A range answer's points by (labels without the leaves' `shard`, time).
fn points(body: &str) -> anyhow::Result<BTreeMap<(String, String), String>> {
    let json: serde_json::Value = serde_json::from_str(body)?;
    let mut out = BTreeMap::new();
    for series in json["data"]["result"].as_array().context("no result")? {
        let mut labels = series["metric"].clone();
        if let Some(map) = labels.as_object_mut() {
            map.remove("shard");
        }
        for point in series["values"].as_array().context("no values")? {
            out.insert((labels.to_string(), point[0].to_string()), point[1].to_string());
        }
    }
    Ok(out)
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let runs = runs_arg()?;
    let dir = tempfile::tempdir()?;
    let single_prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let leaf_prometheus: Vec<Prometheus> = (0..LEAVES)
        .map(|_| Prometheus::start(&PrometheusOptions::default()))
        .collect::<anyhow::Result<_>>()?;
    let (_single, single_url) = sketching(&dir.path().join("single"), &single_prometheus)?;
    let mut leaves = Vec::new();
    for (i, prometheus) in leaf_prometheus.iter().enumerate() {
        leaves.push(sketching(&dir.path().join(format!("leaf-{i}")), prometheus)?);
    }
    let destinations: String = leaves
        .iter()
        .map(|(_, url)| format!("    - url: {url}/api/v1/write\n"))
        .collect();
    let (_front, front_url) = configured(
        &dir.path().join("front"),
        &format!(
            "ingest:\n  enabled: true\n  queue_dir: {}\n  max_queue_bytes: 4294967296\n  destinations:\n{destinations}",
            dir.path().join("front").join("queue").display()
        ),
        &leaves[0].1,
    )?;
    let endpoints: String = leaves
        .iter()
        .enumerate()
        .map(|(i, (_, url))| {
            format!(
                "    - url: {url}\n      kind: sketch_proxy\n      external_labels: {{shard: leaf-{i}}}\n"
            )
        })
        .collect();
    let top_yaml =
        |push: bool| format!("downstream:\n  endpoints:\n{endpoints}query:\n  push_down: {push}\n{NO_CACHE}");
    let (_top, top_url) = configured(&dir.path().join("top"), &top_yaml(true), &leaves[0].1)?;
    let (_raw_top, raw_top_url) = configured(&dir.path().join("raw-top"), &top_yaml(false), &leaves[0].1)?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let start = (now - HOURS * 3_600_000) / 60_000 * 60_000;
    let samples = (HOURS * 3_600_000 / SCRAPE_MS) as usize;
    let end = start + (samples as i64 - 1) * SCRAPE_MS;
    println!("writing {SERIES} series × {samples} samples to the single proxy and through the front proxy");
    let started = Instant::now();
    for from in (0..samples).step_by(SLICE) {
        let to = (from + SLICE).min(samples);
        let body = encode(start, 0..SERIES, from, to);
        post_write_body(&single_url, &body)?;
        post_write_body(&front_url, &body)?;
        // Prometheus refuses samples more than an hour behind the newest it holds:
        // each slice is delivered everywhere before the next is sent.
        let delivered = SERIES * to;
        wait_until(
            Duration::from_secs(120),
            "every Prometheus to hold the slice",
            || {
                let leaves: anyhow::Result<usize> =
                    leaf_prometheus.iter().map(|p| count_samples(&p.url(), end)).sum();
                count_samples(&single_prometheus.url(), end).is_ok_and(|n| n == delivered)
                    && leaves.is_ok_and(|n| n == delivered)
            },
        )?;
    }
    println!(
        "written and delivered in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let shares: Vec<usize> = leaf_prometheus
        .iter()
        .map(|p| count_samples(&p.url(), end).map(|n| n / samples))
        .collect::<anyhow::Result<_>>()?;
    println!("series per leaf: {shares:?}");

    let range = format!(
        "start={}&end={}&step=60",
        (start + 3_600_000) as f64 / 1000.0,
        end as f64 / 1000.0
    );
    let path = format!("/api/v1/query_range?query={}&{range}", encode_query(P1));
    let (single_body, single_path) = get(&format!("{single_url}{path}"))?;
    let response = http_agent().get(format!("{top_url}{path}")).call()?;
    let pushed = response
        .headers()
        .get("x-pushed-down")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = response;
    let top_body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()?;
    if single_path.as_deref() != Some("sketch") {
        bail!("the single proxy answered P1 by {single_path:?}, not from sketches");
    }
    if pushed.is_none() {
        bail!("the top proxy pushed nothing down: {top_body}");
    }
    if points(&top_body)? != points(&single_body)? {
        bail!("the tier's P1 differs from the single proxy's");
    }
    println!(
        "P1 over the tier equals the single proxy's; pushed: {}",
        pushed.unwrap_or_default()
    );

    // Bytes out of the leaves for one panel: the pushed answers as the top asks them
    // (compact, gzip) and as JSON, and the raw chunks.
    let (mut pushed_bytes, mut json_bytes) = (0, 0);
    for (_, leaf) in &leaves {
        pushed_bytes += wire_bytes(&format!("{leaf}{path}"))?;
        json_bytes += get(&format!("{leaf}{path}"))?.0.len();
    }
    let before: f64 = leaf_prometheus
        .iter()
        .map(read_bytes)
        .sum::<anyhow::Result<f64>>()?;
    let (raw_body, _) = get(&format!("{raw_top_url}{path}"))?;
    let after: f64 = leaf_prometheus
        .iter()
        .map(read_bytes)
        .sum::<anyhow::Result<f64>>()?;
    let raw_bytes = after - before;
    if points(&raw_body)?.len() != points(&single_body)?.len() {
        bail!("the raw-reading top answered other series or steps");
    }

    let (mut one, mut tier) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        one.push(time(&format!("{single_url}{path}"))?);
        tier.push(time(&format!("{top_url}{path}"))?);
    }
    let (o, t) = (median(&mut one), median(&mut tier));
    println!();
    println!("| P1, {SERIES} series | one proxy | top over {LEAVES} leaves | tier ÷ one |");
    println!("|---|---:|---:|---:|");
    println!(
        "| median of {runs} | {:.0} ms | {:.0} ms | {:.2} |",
        o.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() / o.as_secs_f64()
    );
    println!();
    println!("| bytes out of the leaves for one P1 | KiB |");
    println!("|---|---:|");
    println!(
        "| pushed, as the top asks (compact, gzip) | {:.0} |",
        pushed_bytes as f64 / 1024.0
    );
    println!(
        "| pushed, had it asked JSON | {:.0} |",
        json_bytes as f64 / 1024.0
    );
    println!(
        "| raw: their Prometheus servers' remote-read chunks | {:.0} |",
        raw_bytes / 1024.0
    );
    println!("| raw ÷ pushed | {:.1} |", raw_bytes / pushed_bytes as f64);
    Ok(())
}
