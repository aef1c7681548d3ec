//! Remote-write throughput, end to end: several senders push pre-encoded batches (1,000
//! series × 500 samples per request by default) through the release proxy, which
//! sketches every series for all four built-in functions and forwards to a real
//! Prometheus 2.42. Reports acknowledged and delivered samples/s, and the proxy's and
//! Prometheus' CPU and memory.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin remote_write -- [SENDERS] [REQUESTS_PER_SENDER]
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};
use sketch_proxy_load_tests::{sketching_config, start_proxy};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, http_agent, wait_until};

const SERIES_PER_REQUEST: usize = 1000;
const SAMPLES_PER_SERIES: usize = 500;
/// Samples of one series in one request are this far apart.
const STEP_MS: i64 = 10;

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let senders = args.first().copied().unwrap_or(4);
    let per_sender = args.get(1).copied().unwrap_or(5);
    let prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sketching_config(dir.path(), "{__name__=~\"load_.*\"}", "26h", &[])?;
    let (proxy, url) = start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;

    // Sender s owns series [s·1000, (s+1)·1000); request k carries the next 500
    // samples of each, starting 50 minutes ago (inside Prometheus' head window).
    let start_ms = now_ms() - 3_000_000;
    println!(
        "encoding {senders} × {per_sender} requests of {SERIES_PER_REQUEST} series × {SAMPLES_PER_SERIES} samples"
    );
    let bodies: Vec<Vec<Vec<u8>>> = (0..senders)
        .map(|s| (0..per_sender).map(|k| body(s, k, start_ms)).collect())
        .collect();
    let total = (senders * per_sender * SERIES_PER_REQUEST * SAMPLES_PER_SERIES) as u64;
    let compressed: usize = bodies.iter().flatten().map(Vec::len).sum();

    // The same requests straight into another Prometheus first: the baseline.
    let direct = {
        let alone = Prometheus::start(&PrometheusOptions::default())?;
        let pid = alone.pid().context("Prometheus is not running")?;
        let cpu = cpu_seconds(pid)?;
        let elapsed = send_all(&alone.url(), &bodies)?;
        (elapsed, cpu_seconds(pid)? - cpu)
    };

    let pid = proxy.0.id();
    let before = (
        cpu_seconds(pid)?,
        cpu_seconds(prometheus.pid().context("Prometheus is not running")?)?,
    );
    let started = Instant::now();
    let acked = send_all(&url, &bodies)?;
    let metrics = format!("{url}/metrics");
    wait_until(
        Duration::from_secs(600),
        "every sample to reach Prometheus",
        || counter(&metrics, "sketch_proxy_remote_write_samples_sent_total").is_ok_and(|n| n >= total as f64),
    )?;
    let delivered = started.elapsed();
    let after = (
        cpu_seconds(pid)?,
        cpu_seconds(prometheus.pid().context("Prometheus is not running")?)?,
    );
    let sketched = counter(&metrics, "sketch_proxy_sketch_samples_total")?;
    let sketch_memory = counter(&metrics, "sketch_proxy_sketch_memory_bytes")?;

    println!(
        "samples: {total} in {} requests, {:.1} MB compressed",
        senders * per_sender,
        compressed as f64 / 1e6
    );
    println!(
        "Prometheus alone: {:.2} s, {:.0} samples/s, {:.1} CPU seconds",
        direct.0.as_secs_f64(),
        total as f64 / direct.0.as_secs_f64(),
        direct.1
    );
    println!("sketched samples (×4 functions): {sketched}");
    println!(
        "acknowledged: {:.2} s, {:.0} samples/s",
        acked.as_secs_f64(),
        total as f64 / acked.as_secs_f64()
    );
    println!(
        "delivered to Prometheus: {:.2} s, {:.0} samples/s",
        delivered.as_secs_f64(),
        total as f64 / delivered.as_secs_f64()
    );
    println!(
        "CPU seconds: proxy {:.1}, Prometheus {:.1}",
        after.0 - before.0,
        after.1 - before.1
    );
    println!(
        "proxy peak RSS {:.0} MB; sketch memory reported by the plugins {:.0} MB",
        peak_rss_kb(pid)? as f64 / 1024.0,
        sketch_memory / 1e6
    );
    Ok(())
}

/// Sends every sender's requests to `base` (one thread and connection per sender, a 503
/// retried after 100 ms); returns when all are acknowledged.
fn send_all(base: &str, bodies: &[Vec<Vec<u8>>]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = bodies
            .iter()
            .map(|requests| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let agent = http_agent();
                    for body in requests {
                        loop {
                            let response = agent
                                .post(format!("{base}/api/v1/write"))
                                .header("Content-Encoding", "snappy")
                                .header("Content-Type", "application/x-protobuf")
                                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                                .send(&body[..])?;
                            match response.status().as_u16() {
                                204 => break,
                                503 => std::thread::park_timeout(Duration::from_millis(100)),
                                other => bail!("write answered {other}"),
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        Ok(started.elapsed())
    })
}

/// Request `k` of sender `s`, snappy-compressed: half the series lognormal floats, half
/// Zipf-distributed integers.
fn body(s: usize, k: usize, start_ms: i64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64((s * 1_000_003 + k) as u64);
    let lognormal = LogNormal::new(3.0, 1.0).unwrap_or_else(|_| unreachable!("valid parameters"));
    let zipf = Zipf::new(1000.0, 1.2).unwrap_or_else(|_| unreachable!("valid parameters"));
    let first_ms = start_ms + (k * SAMPLES_PER_SERIES) as i64 * STEP_MS;
    let timeseries = (0..SERIES_PER_REQUEST)
        .map(|i| {
            let id = s * SERIES_PER_REQUEST + i;
            let integers = id % 2 == 1;
            let samples = (0..SAMPLES_PER_SERIES)
                .map(|j| Sample {
                    value: if integers {
                        zipf.sample(&mut rng)
                    } else {
                        lognormal.sample(&mut rng)
                    },
                    timestamp: first_ms + j as i64 * STEP_MS + rng.random_range(0..STEP_MS / 2),
                })
                .collect();
            TimeSeries {
                labels: vec![
                    label(
                        "__name__",
                        if integers { "load_codes" } else { "load_latency_ms" },
                    ),
                    label("instance", &format!("host-{id}")),
                    label("job", "load"),
                ],
                samples,
                ..TimeSeries::default()
            }
        })
        .collect();
    let raw = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_else(|_| unreachable!("a request is far below snappy's 4 GiB"))
}

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The sum over all label sets of a metric on a `/metrics` page.
fn counter(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http_agent().get(url).call()?.body_mut().read_to_string()?;
    let values: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once(' ')?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.parse().ok()
        })
        .collect();
    if values.is_empty() {
        bail!("{name} not on {url}");
    }
    Ok(values.iter().sum())
}

/// User plus system CPU seconds of a process (`/proc/PID/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn peak_rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .context("no VmHWM")
}
