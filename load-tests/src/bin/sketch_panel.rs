//! The Grafana panel sketches exist for, side by side in one run: 25 h of 100 series at a
//! 10 s scrape (50 lognormal, 50 Zipf-distributed integers) are remote-written through
//! the release proxy, which sketches them under a rule and forwards them into a real
//! Prometheus 2.42; the same requests go to a VictoriaMetrics 1.79 (rollup cache off).
//! Then, repeated and interleaved:
//! - P1: the 24 h panel of `quantile_over_time(0.99, m[1h])` at a 60 s step,
//!   Prometheus and VictoriaMetrics against the proxy (sketches);
//! - P2: instant `quantile_over_time(0.99, m[1d])`, the same three;
//! - P3: 24 h panels of `entropy_over_time`, `distinct_over_time`, `l2_over_time` over
//!   1 h windows, the proxy's sketches against its own exact path (`sketch=off`).
//!
//! Prints medians, the ratios, and the largest relative error of each sketch answer
//! against the exact one.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin sketch_panel -- [RUNS]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_proxy_load_tests::mixed::{SCRAPE_MS, encode_values};
use sketch_proxy_load_tests::{
    count_samples, encode_query, get, median, post_write_body, rss_bytes, runs_arg, sketch_memory_bytes,
    sketching_config, start_proxy, time_gzip,
};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, VictoriaMetrics, http_agent, wait_until};

const SERIES: usize = 100;
const HOURS: i64 = 25;
/// Samples per series written live after the history (an hour).
const LIVE: usize = 360;
/// Samples per series in one remote-write request (30 minutes).
const BATCH: usize = 180;
/// The 24 h panels, registered as rule queries.
const RULE_QUERIES: [&str; 4] = [
    "quantile_over_time(0.99, m[1h])",
    "entropy_over_time(m[1h])",
    "distinct_over_time(m[1h])",
    "l2_over_time(m[1h])",
];
/// Asks the proxy to compute every step, reading none kept.
const NO_CACHE: [(&str, &str); 1] = [("Cache-Control", "no-cache")];

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let runs = runs_arg()?;
    let prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let victoria = VictoriaMetrics::start()?;
    let dir = tempfile::tempdir()?;
    // The panels are registered rule queries: their final steps are kept.
    let config = sketching_config(dir.path(), "m", "26h", &RULE_QUERIES)?;
    // The query log shows where a request's time went.
    let query_log = dir.path().join("queries.log");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("query:\n  log_file: {}\n", query_log.display()));
    std::fs::write(&config, text)?;
    let (proxy, proxy_url) = start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let start = (now - HOURS * 3_600_000) / 60_000 * 60_000;
    let samples = (HOURS * 3_600_000 / SCRAPE_MS) as usize;
    let end = start + (samples as i64 - 1) * SCRAPE_MS;
    // An hour more than the history: written live once it is in, so that sketches and
    // both databases stay current for the panels at a moving now.
    let values = std::sync::Arc::new(generate(samples + LIVE));
    let rss_before = rss_bytes(proxy.0.id())?;
    println!("writing {SERIES} series × {samples} samples through the proxy");
    let started = Instant::now();
    for from in (0..samples).step_by(BATCH) {
        let body = encode(&values, start, from, (from + BATCH).min(samples));
        for target in [&proxy_url, &victoria.url()] {
            post_write_body(target, &body)?;
        }
        // Prometheus refuses samples more than an hour behind the newest it holds, and
        // the proxy's sender may merge queued requests: deliver one at a time.
        let delivered = SERIES * (from + BATCH).min(samples);
        wait_until(Duration::from_secs(60), "Prometheus to hold the request", || {
            count_samples(&prometheus.url(), end).is_ok_and(|n| n == delivered)
        })?;
    }
    victoria.flush()?;
    wait_until(
        Duration::from_secs(60),
        "VictoriaMetrics to hold every sample",
        || count_samples(&victoria.url(), end).is_ok_and(|n| n == SERIES * samples),
    )?;
    println!(
        "written and delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let written = (SERIES * samples) as f64;
    let counted = sketch_memory_bytes(&proxy_url)?;
    let grown = rss_bytes(proxy.0.id())?.saturating_sub(rss_before);
    println!(
        "sketches of all four functions: {:.1} MB as the plugins count ({:.2} B per sample); the proxy's RSS grew {:.1} MB ({:.2} B per sample, {:+.0}% of the count)\n",
        counted as f64 / 1e6,
        counted as f64 / written,
        grown as f64 / 1e6,
        grown as f64 / written,
        (grown as f64 / counted as f64 - 1.0) * 100.0
    );

    let live = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (values, live) = (values.clone(), live.clone());
        let targets = vec![proxy_url.clone(), victoria.url()];
        std::thread::spawn(move || write_live(&values, start, samples, &targets, &live))
    };
    let panel = |query: &str| {
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            encode_query(query),
            // 24 h of steps whose 1 h windows all start at or after the first sample.
            (start + 3_600_000) as f64 / 1000.0,
            end as f64 / 1000.0
        )
    };
    let instant = |query: &str| {
        format!(
            "/api/v1/query?query={}&time={}",
            encode_query(query),
            end as f64 / 1000.0
        )
    };
    println!(
        "| case | exact path | exact | VictoriaMetrics | sketches, computed | speed-up | sketches, cached | speed-up | over VictoriaMetrics (cached) | max relative error |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cases = [
        (
            "P1 24 h panel, quantile_over_time(0.99, m[1h])",
            panel("quantile_over_time(0.99, m[1h])"),
            "Prometheus",
        ),
        (
            "P2 instant quantile_over_time(0.99, m[1d])",
            instant("quantile_over_time(0.99, m[1d])"),
            "Prometheus",
        ),
        (
            "P3 24 h panel, entropy_over_time(m[1h])",
            panel("entropy_over_time(m[1h])"),
            "proxy exact",
        ),
        (
            "P3 24 h panel, distinct_over_time(m[1h])",
            panel("distinct_over_time(m[1h])"),
            "proxy exact",
        ),
        (
            "P3 24 h panel, l2_over_time(m[1h])",
            panel("l2_over_time(m[1h])"),
            "proxy exact",
        ),
    ];
    for (name, path, exact_path) in cases {
        let exact_url = if exact_path == "Prometheus" {
            format!("{}{path}", prometheus.url())
        } else {
            format!("{proxy_url}{path}&sketch=off")
        };
        let sketch_url = format!("{proxy_url}{path}");
        let (exact_body, answered) = get(&exact_url)?;
        let (sketch_body, sketch_answered) = get(&sketch_url)?;
        if sketch_answered.as_deref() != Some("sketch") {
            bail!("{name}: answered by {sketch_answered:?}, not from sketches");
        }
        if exact_path != "Prometheus" && answered.as_deref() != Some("engine") {
            bail!("{name}: the exact path answered by {answered:?}");
        }
        let error = max_relative_error(&exact_body, &sketch_body)?;
        // VictoriaMetrics answers the two queries Prometheus answers.
        let victoria_url = (exact_path == "Prometheus").then(|| format!("{}{path}", victoria.url()));
        if let Some(url) = &victoria_url {
            get(url)?;
        }
        let kept = http_agent().get(&sketch_url).call()?;
        let outcome = kept.headers().get("x-cache").and_then(|v| v.to_str().ok());
        if outcome != Some("hit") {
            bail!("{name}: the answer was not cached: {outcome:?}");
        }
        // Every client accepts gzip, as Grafana does.
        let (mut exact, mut computed, mut kept, mut vm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The proxy's exact path is computed every time, as Prometheus computes.
        let exact_headers: &[(&str, &str)] = if exact_path == "Prometheus" {
            &[]
        } else {
            &NO_CACHE
        };
        for _ in 0..runs {
            exact.push(time_gzip(&exact_url, exact_headers)?);
            if let Some(url) = &victoria_url {
                vm.push(time_gzip(url, &[])?);
            }
            computed.push(time_gzip(&sketch_url, &NO_CACHE)?);
            kept.push(time_gzip(&sketch_url, &[])?);
        }
        let (e, c, k) = (median(&mut exact), median(&mut computed), median(&mut kept));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let (vm_median, vm_ratio) = if vm.is_empty() {
            ("—".to_owned(), "—".to_owned())
        } else {
            let v = median(&mut vm);
            (format!("{:.0} ms", ms(v)), format!("{:.0}×", ratio(v, k)))
        };
        println!(
            "| {name} | {exact_path} | {:.0} ms | {vm_median} | {:.1} ms | {:.0}× | {:.1} ms | {:.0}× | {vm_ratio} | {:.3}% |",
            ms(e),
            ms(c),
            ratio(e, c),
            ms(k),
            ratio(e, k),
            error * 100.0
        );
    }
    let result = at_now(&prometheus.url(), &victoria.url(), &proxy_url, start, runs);
    // The stage timings of the last P2 at now, as the proxy's query log has them.
    let log = std::fs::read_to_string(&query_log)?;
    if let Some(line) = log
        .lines()
        .rev()
        .find(|l| !l.contains("\"end\"") && !l.contains("\"start\":\""))
    {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "\nP2 at now, the proxy's stages (s): {}",
            entry["stats"]["timings"]
        );
    }
    live.store(false, std::sync::atomic::Ordering::Relaxed);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the live writer panicked"))??;
    result
}

/// Writes sample `samples..` of every series to each of `targets` once its time has
/// come, until `live` is false.
fn write_live(
    values: &[Vec<f64>],
    start: i64,
    samples: usize,
    targets: &[String],
    live: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let mut next = samples;
    while live.load(std::sync::atomic::Ordering::Relaxed) && next < samples + LIVE {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
        if start + next as i64 * SCRAPE_MS <= now {
            let body = encode(values, start, next, next + 1);
            for target in targets {
                post_write_body(target, &body)?;
            }
            next += 1;
        } else {
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The panels as a dashboard asks them, ending at the moving now: P1 over the last 24 h
/// (steps in the freshness window computed, the rest from the results cache) and P2 at
/// now (computed every time), against Prometheus and VictoriaMetrics.
#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn at_now(
    prometheus: &str,
    victoria: &str,
    proxy: &str,
    first_sample: i64,
    runs: usize,
) -> anyhow::Result<()> {
    println!(
        "
At a moving now (gzip-accepting clients; medians of {runs} runs back to back per server):
"
    );
    println!(
        "| case | Prometheus | VictoriaMetrics | proxy | over Prometheus | over VictoriaMetrics | X-Cache (X-Answered-By) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let p1 = |now_ms: i64| {
        let end = now_ms / 60_000 * 60_000;
        // Windows starting before the data would differ from Prometheus' (partial).
        let start = (end - 86_400_000).max(first_sample + 3_600_000) / 60_000 * 60_000 + 60_000;
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            encode_query("quantile_over_time(0.99, m[1h])"),
            start / 1000,
            end / 1000
        )
    };
    let p2 = |_: i64| {
        format!(
            "/api/v1/query?query={}",
            encode_query("quantile_over_time(0.99, m[1d])")
        )
    };
    let cases: [(&str, &dyn Fn(i64) -> String); 2] = [
        ("P1 24 h panel ending now, quantile_over_time(0.99, m[1h])", &p1),
        ("P2 instant quantile_over_time(0.99, m[1d]) at now", &p2),
    ];
    for (name, path) in cases {
        let now = || {
            i64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis()),
            )
            .unwrap_or(0)
        };
        // Each server in turn, its runs back to back after one untimed request (which
        // also fills the proxy's cache for the panel), as a refreshing dashboard asks:
        // interleaved on two cores, each run would land on the previous server's
        // leftover work (Go's collector after a 130 ms query) rather than on its own.
        let timed = |server: &str| -> anyhow::Result<Vec<Duration>> {
            get(&format!("{server}{}", path(now())))?;
            (0..runs)
                .map(|_| time_gzip(&format!("{server}{}", path(now())), &[]))
                .collect()
        };
        let (mut exact, mut vm, mut sketch) = (timed(prometheus)?, timed(victoria)?, timed(proxy)?);
        let mut outcomes = Vec::new();
        for _ in 0..runs {
            let response = http_agent().get(&format!("{proxy}{}", path(now()))).call()?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
            };
            outcomes.push(format!("{} ({})", header("x-cache"), header("x-answered-by")));
        }
        outcomes.sort();
        outcomes.dedup();
        let (e, v, s) = (median(&mut exact), median(&mut vm), median(&mut sketch));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.1} ms | {:.0}× | {:.0}× | {} |",
            ms(e),
            ms(v),
            ms(s),
            e.as_secs_f64() / s.as_secs_f64(),
            v.as_secs_f64() / s.as_secs_f64(),
            outcomes.join(", ")
        );
    }
    Ok(())
}

/// Values per series: the first half lognormal, the second Zipf-distributed integers.
fn generate(samples: usize) -> Vec<Vec<f64>> {
    let mut rng = StdRng::seed_from_u64(42);
    let lognormal = LogNormal::new(3.0, 1.0).unwrap_or_else(|_| unreachable!("valid parameters"));
    let zipf = Zipf::new(1000.0, 1.2).unwrap_or_else(|_| unreachable!("valid parameters"));
    (0..SERIES)
        .map(|s| {
            (0..samples)
                .map(|_| {
                    if s < SERIES / 2 {
                        lognormal.sample(&mut rng)
                    } else {
                        zipf.sample(&mut rng)
                    }
                })
                .collect()
        })
        .collect()
}

/// The snappy protobuf of samples `from..to` of every series.
fn encode(values: &[Vec<f64>], start: i64, from: usize, to: usize) -> Vec<u8> {
    let series = values.iter().map(|v| v[from..to].to_vec()).enumerate();
    encode_values("m", start, from, series)
}

/// Every (series, time) value of an answer.
fn points(body: &str) -> anyhow::Result<BTreeMap<(String, String), f64>> {
    let json: serde_json::Value = serde_json::from_str(body)?;
    let mut out = BTreeMap::new();
    for s in json["data"]["result"].as_array().context("no result")? {
        let metric = s["metric"].to_string();
        let values = match s.get("values") {
            Some(v) => v.as_array().context("values")?.clone(),
            None => vec![s["value"].clone()],
        };
        for p in values {
            let value: f64 = p[1].as_str().context("value")?.parse()?;
            out.insert((metric.clone(), p[0].to_string()), value);
        }
    }
    Ok(out)
}

/// The largest |sketch − exact| / |exact| over every point both answers have; the
/// answers must have the same points.
fn max_relative_error(exact: &str, sketch: &str) -> anyhow::Result<f64> {
    let (exact, sketch) = (points(exact)?, points(sketch)?);
    if exact.len() != sketch.len() {
        bail!("{} exact points, {} sketch points", exact.len(), sketch.len());
    }
    let mut worst = 0.0_f64;
    for (key, e) in &exact {
        let s = sketch
            .get(key)
            .with_context(|| format!("sketch answer lacks {key:?}"))?;
        if *e != 0.0 {
            worst = worst.max((s - e).abs() / e.abs());
        }
    }
    Ok(worst)
}
