//! Grafana users replayed: 20 users each refresh a 10-panel dashboard over the last 6 h
//! every 30 s, for 5 minutes (or `MINUTES`), three times in one run:
//! 1. direct to Prometheus 2.42 (the three panels only the proxy knows go to the proxy,
//!    computed exactly with the cache off: the baseline a user without sketches has);
//! 2. through the release proxy with the results cache off (`Cache-Control: no-cache,
//!    no-store` on every request);
//! 3. through the proxy with the cache on.
//!
//! Data: 100 counters, 100 latency gauges (sketched) and 10 classic histograms at a 10 s
//! scrape: 6.5 h of history, then live samples every 10 s, all remote-written through
//! the proxy into Prometheus. Panels: `rate`, `increase`, `sum by`, `histogram_quantile`,
//! `topk` and the four sketch functions. Start and end are aligned to the 30 s step, as
//! Grafana aligns them.
//!
//! Reports each run's panel latency (p50, p99) and downstream's load: requests it
//! received (`prometheus_http_requests_total` for query, query_range, series and read)
//! and samples it read (its query log's `totalQueryableSamples` for the queries its
//! engine ran, plus the samples the proxy read from it by remote read, from the proxy's
//! query log).
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin dashboard_replay -- [MINUTES]
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, LogNormal};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};
use sketch_proxy_load_tests::{encode_query, get_gzip, get_with, post_write, sketching_config, start_proxy};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, http_agent, wait_until};

const USERS: usize = 20;
const REFRESH: Duration = Duration::from_secs(30);
const STEP_S: i64 = 30;
const RANGE_S: i64 = 6 * 3600;
const SCRAPE_MS: i64 = 10_000;
const HISTORY_MS: i64 = 6 * 3_600_000 + 1_800_000;
const SERIES: usize = 100;
const HISTOGRAMS: usize = 10;
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];

/// The dashboard's panels; `true` for the three only the proxy knows.
const PANELS: [(&str, bool); 10] = [
    ("sum by (job) (rate(replay_requests_total[5m]))", false),
    ("rate(replay_requests_total{job=\"job-0\"}[5m])", false),
    ("sum by (job) (increase(replay_requests_total[1h]))", false),
    (
        "histogram_quantile(0.99, sum by (le) (rate(replay_duration_seconds_bucket[5m])))",
        false,
    ),
    ("topk(5, max by (instance) (replay_latency_seconds))", false),
    ("quantile_over_time(0.99, replay_latency_seconds[1h])", false),
    ("entropy_over_time(replay_latency_seconds[1h])", true),
    ("distinct_over_time(replay_latency_seconds[1h])", true),
    ("l2_over_time(replay_latency_seconds[1h])", true),
    ("avg by (job) (avg_over_time(replay_latency_seconds[10m]))", false),
];

const NO_CACHE: [(&str, &str); 1] = [("Cache-Control", "no-cache, no-store")];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Run {
    Direct,
    CacheOff,
    CacheOn,
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Run::Direct => "direct to Prometheus",
            Run::CacheOff => "proxy, cache off",
            Run::CacheOn => "proxy, cache on",
        }
    }
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let minutes: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let prometheus_log = dir.path().join("prometheus-queries.log");
    let prometheus = Prometheus::start(&PrometheusOptions {
        query_log_file: Some(prometheus_log.clone()),
        ..PrometheusOptions::default()
    })?;
    let rule_queries: Vec<&str> = PANELS[5..9].iter().map(|(q, _)| *q).collect();
    let config = sketching_config(dir.path(), "replay_latency_seconds", "8h", &rule_queries)?;
    let proxy_log = dir.path().join("proxy-queries.log");
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str(&format!("query:\n  log_file: {}\n", proxy_log.display()));
    std::fs::write(&config, text)?;
    let (_proxy, proxy_url) = start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;

    let now = now_ms();
    let first = (now - HISTORY_MS) / SCRAPE_MS * SCRAPE_MS;
    let mut data = Data::new();
    println!("writing 6.5 h of history through the proxy");
    let mut t = first;
    while t <= now {
        let upto = (t + 1_800_000).min(now);
        post_write(&proxy_url, &data.request(t, upto))?;
        t = upto + SCRAPE_MS;
        let written = data.samples;
        let mut held = Ok(0);
        let waited = wait_until(Duration::from_secs(120), "Prometheus to hold the history", || {
            held = samples_held(&prometheus.url());
            held.as_ref().is_ok_and(|n| *n >= written)
        });
        waited.with_context(|| format!("{written} samples written, Prometheus holds {held:?}"))?;
    }
    // Live samples every 10 s from now on, as a Prometheus scraping would send them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, proxy_url) = (stop.clone(), proxy_url.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut next = t;
            while !stop.load(Ordering::Relaxed) {
                if now_ms() >= next {
                    post_write(&proxy_url, &data.request(next, next))?;
                    next += SCRAPE_MS;
                }
                std::thread::park_timeout(Duration::from_millis(200));
            }
            Ok(())
        })
    };

    println!("\n{USERS} users, 10 panels over 6 h every 30 s, {minutes} min per run\n");
    println!(
        "| run | panel requests | failed | p50 ms | p99 ms | downstream requests | downstream samples read | cache hit / partial / miss |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut report = Vec::new();
    for run in [Run::Direct, Run::CacheOff, Run::CacheOn] {
        let requests_before = downstream_requests(&prometheus.url())?;
        let samples_before = logged_samples(&prometheus_log)? + logged_samples(&proxy_log)?;
        let cache_before = cache_counts(&proxy_url)?;
        let answered = replay(
            run,
            &prometheus.url(),
            &proxy_url,
            Duration::from_secs(minutes * 60),
        )?;
        let failed = answered.iter().filter(|(_, ok)| !ok).count();
        let mut latencies: Vec<Duration> = answered.iter().map(|(d, _)| *d).collect();
        let requests = downstream_requests(&prometheus.url())? - requests_before;
        let samples = logged_samples(&prometheus_log)? + logged_samples(&proxy_log)? - samples_before;
        let cache = cache_counts(&proxy_url)?;
        let cache: Vec<String> = cache
            .iter()
            .zip(&cache_before)
            .map(|(a, b)| (a - b).to_string())
            .collect();
        latencies.sort();
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        let (p50, p99) = (pick(0.5), pick(0.99));
        println!(
            "| {} | {} | {failed} | {p50:.1} | {p99:.1} | {requests:.0} | {samples:.0} | {} |",
            run.name(),
            latencies.len(),
            cache.join(" / ")
        );
        report.push((p99, requests, samples));
    }
    stop.store(true, Ordering::Relaxed);
    writer.thread().unpark();
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    let (direct, on) = (report[0], report[2]);
    println!(
        "\ncache on against direct: p99 {:.1}× lower, downstream requests {:.1}× fewer, samples read {:.1}× fewer",
        direct.0 / on.0,
        direct.1 / on.1.max(1.0),
        direct.2 / on.2.max(1.0)
    );
    Ok(())
}

/// Every user's panel latencies over `length`, and whether each panel was answered.
fn replay(
    run: Run,
    prometheus: &str,
    proxy: &str,
    length: Duration,
) -> anyhow::Result<Vec<(Duration, bool)>> {
    let started = Instant::now();
    let users: Vec<_> = (0..USERS)
        .map(|user| {
            let (prometheus, proxy) = (prometheus.to_owned(), proxy.to_owned());
            std::thread::spawn(move || -> anyhow::Result<Vec<(Duration, bool)>> {
                // Users opened the dashboard at different moments within a refresh.
                let offset = REFRESH * u32::try_from(user).unwrap_or(0) / u32::try_from(USERS).unwrap_or(1);
                let mut latencies = Vec::new();
                let mut refresh = 0;
                loop {
                    let due = offset + REFRESH * refresh;
                    if due >= length {
                        return Ok(latencies);
                    }
                    while started.elapsed() < due {
                        std::thread::park_timeout(due - started.elapsed());
                    }
                    let end = now_ms() / 1000 / STEP_S * STEP_S;
                    for (query, proxy_only) in PANELS {
                        let path = format!(
                            "/api/v1/query_range?query={}&start={}&end={end}&step={STEP_S}",
                            encode_query(query),
                            end - RANGE_S
                        );
                        let (url, headers): (String, &[(&str, &str)]) = match run {
                            Run::Direct if proxy_only => (format!("{proxy}{path}&sketch=off"), &NO_CACHE),
                            Run::Direct => (format!("{prometheus}{path}"), &[]),
                            Run::CacheOff => (format!("{proxy}{path}"), &NO_CACHE),
                            Run::CacheOn => (format!("{proxy}{path}"), &[]),
                        };
                        let asked = Instant::now();
                        // A panel that fails or takes over 60 s (the client's timeout;
                        // Grafana's is 30 s) counts as failed, with its time.
                        let ok = get_gzip(&url, headers).is_ok();
                        latencies.push((asked.elapsed(), ok));
                    }
                    refresh += 1;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for user in users {
        all.extend(user.join().map_err(|_| anyhow::anyhow!("a user panicked"))??);
    }
    Ok(all)
}

/// The samples written so far, and their values' generators.
struct Data {
    rng: StdRng,
    counters: Vec<f64>,
    histograms: Vec<[f64; 11]>,
    latency: LogNormal<f64>,
    samples: usize,
}

impl Data {
    fn new() -> Self {
        Self {
            rng: StdRng::seed_from_u64(11),
            counters: vec![0.0; SERIES],
            histograms: vec![[0.0; 11]; HISTOGRAMS],
            latency: LogNormal::new(-3.0, 0.8).unwrap_or_else(|_| unreachable!("valid parameters")),
            samples: 0,
        }
    }

    /// Every series' samples from `from` to `to` (ms, inclusive, on the scrape grid).
    fn request(&mut self, from: i64, to: i64) -> WriteRequest {
        let times: Vec<i64> = (from..=to).step_by(SCRAPE_MS as usize).collect();
        let mut timeseries = Vec::new();
        let label = |name: &str, value: &str| Label {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        for s in 0..SERIES {
            let (instance, job) = (format!("host-{s}"), format!("job-{}", s % 5));
            let mut requests = Vec::with_capacity(times.len());
            let mut latencies = Vec::with_capacity(times.len());
            for &t in &times {
                self.counters[s] += self.rng.random_range(0.0..100.0_f64).round();
                requests.push(Sample {
                    value: self.counters[s],
                    timestamp: t,
                });
                latencies.push(Sample {
                    value: self.latency.sample(&mut self.rng),
                    timestamp: t,
                });
            }
            let labels = |name: &str| {
                vec![
                    label("__name__", name),
                    label("instance", &instance),
                    label("job", &job),
                ]
            };
            timeseries.push(series(labels("replay_requests_total"), requests));
            timeseries.push(series(labels("replay_latency_seconds"), latencies));
        }
        for h in 0..HISTOGRAMS {
            let mut buckets: Vec<Vec<Sample>> = vec![Vec::with_capacity(times.len()); BUCKETS.len()];
            for &t in &times {
                for _ in 0..5 {
                    let v = self.latency.sample(&mut self.rng);
                    let bounds = BUCKETS.map(|b| b.parse::<f64>().unwrap_or(f64::INFINITY));
                    for (b, bound) in bounds.iter().enumerate() {
                        if v <= *bound {
                            self.histograms[h][b] += 1.0;
                        }
                    }
                }
                for (b, samples) in buckets.iter_mut().enumerate() {
                    samples.push(Sample {
                        value: self.histograms[h][b],
                        timestamp: t,
                    });
                }
            }
            for (le, samples) in BUCKETS.iter().zip(buckets) {
                let labels = vec![
                    label("__name__", "replay_duration_seconds_bucket"),
                    label("instance", &format!("host-{h}")),
                    label("le", le),
                ];
                timeseries.push(series(labels, samples));
            }
        }
        self.samples += timeseries.iter().map(|s| s.samples.len()).sum::<usize>();
        WriteRequest {
            timeseries,
            ..WriteRequest::default()
        }
    }
}

fn series(labels: Vec<Label>, samples: Vec<Sample>) -> TimeSeries {
    TimeSeries {
        labels,
        samples,
        ..TimeSeries::default()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Samples Prometheus holds of the replay's series in its head.
fn samples_held(prometheus: &str) -> anyhow::Result<usize> {
    let query = encode_query(
        "sum(count_over_time(replay_requests_total[8h])) + sum(count_over_time(replay_latency_seconds[8h])) + sum(count_over_time(replay_duration_seconds_bucket[8h]))",
    );
    let (body, _) = get_with(&format!("{prometheus}/api/v1/query?query={query}"), &[])?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let value = json["data"]["result"][0]["value"][1].as_str().unwrap_or("0");
    Ok(value.parse::<f64>()? as usize)
}

/// Requests Prometheus received on the endpoints a dashboard's answers cost.
fn downstream_requests(prometheus: &str) -> anyhow::Result<f64> {
    let body = http_agent()
        .get(format!("{prometheus}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("prometheus_http_requests_total{"))
        .filter(|l| {
            [
                "/api/v1/query\"",
                "/api/v1/query_range\"",
                "/api/v1/series\"",
                "/api/v1/read\"",
            ]
            .iter()
            .any(|h| l.contains(&format!("handler=\"{h}")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// The sum of `totalQueryableSamples` over a query log's lines.
fn logged_samples(file: &Path) -> anyhow::Result<f64> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Ok(0.0);
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["stats"]["samples"]["totalQueryableSamples"].as_f64())
        .sum())
}

/// The proxy's results-cache counts: hit, partial, miss.
fn cache_counts(proxy: &str) -> anyhow::Result<Vec<u64>> {
    let body = http_agent()
        .get(format!("{proxy}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    ["hit", "partial", "miss"]
        .iter()
        .map(|result| {
            let prefix = format!("sketch_proxy_results_cache_requests_total{{result=\"{result}\"}} ");
            Ok(body
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.parse::<f64>())
                .transpose()?
                .unwrap_or(0.0) as u64)
        })
        .collect::<anyhow::Result<Vec<u64>>>()
        .and_then(|counts| {
            if counts.len() == 3 {
                Ok(counts)
            } else {
                bail!("cache counts missing")
            }
        })
}
