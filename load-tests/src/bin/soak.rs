//! Soak: remote write at a steady rate (200,000 samples/s by default) under sketch
//! rules for all four built-in functions, while 200 query clients ask the proxy without
//! pause; then, the writes still on, the same clients against the Prometheus behind it
//! for a minute. Reports the proxy's resident memory over time, the error rate, p50/p99
//! of both, and whether every acknowledged sample reached Prometheus. With `--outage`, Prometheus is stopped for
//! 60 s in the middle: nothing acknowledged may be lost, and everything recovers alone.
//!
//! ```sh
//! cargo build --release -p sketch-proxy
//! cargo run --release -p sketch-proxy-load-tests --bin soak -- [SECONDS] [SAMPLES_PER_S] [CLIENTS] [--outage]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};
use sketch_proxy_load_tests::{encode_query, sketching_config, start_proxy};
use sketch_proxy_testkit::{Prometheus, PrometheusOptions, http_agent, wait_until};

/// Series written; each gets one sample per write round.
const SERIES: usize = 2000;
/// Concurrent writers, each owning a share of the series, as Prometheus' remote-write
/// shards do.
const WRITERS: usize = 4;
/// The sketches' history: short, so that their memory reaches its steady state (old
/// samples leave as new ones come) within the run.
const RETAIN: &str = "2m";
/// What counts as warm-up in the memory figures: twice the history (it fills, then
/// the plugins' buffers reach the capacity they keep), plus a minute.
const WARM_UP_S: u64 = 300;
/// Queries the clients cycle through, each over one shard (200 series), as dashboard
/// panels would: sketched, plain, and an aggregation over every series. `{shard}` is
/// replaced by the client's current shard.
const QUERIES: [&str; 3] = [
    "quantile_over_time(0.99, soak_latency{shard=\"{shard}\"}[2m])",
    "sum(rate(soak_latency{shard=\"{shard}\"}[1m]))",
    "max by (shard) (soak_latency)",
];

struct Args {
    seconds: u64,
    rate: u64,
    clients: usize,
    outage: bool,
}

fn args() -> anyhow::Result<Args> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<u64> = all
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    Ok(Args {
        seconds: numbers.first().copied().unwrap_or(600),
        rate: numbers.get(1).copied().unwrap_or(200_000),
        clients: usize::try_from(numbers.get(2).copied().unwrap_or(200))?,
        outage: all.iter().any(|a| a == "--outage"),
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One round of writer `w`: a sample at `t` for each of its series, snappy-compressed.
fn round(w: usize, t: i64, rng: &mut StdRng) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: (w..SERIES)
            .step_by(WRITERS)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "soak_latency".into(),
                    },
                    Label {
                        name: "series".into(),
                        value: i.to_string(),
                    },
                    Label {
                        name: "shard".into(),
                        value: (i % 10).to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: (rng.random::<f64>() * 5.0).exp(),
                    timestamp: t,
                }],
                ..TimeSeries::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap_or_default()
}

/// Writer `w`: rounds at its share of `rate` samples/s until `stop`; returns (samples
/// acknowledged, answers other than 204).
fn write(w: usize, url: &str, rate: u64, stop: &AtomicBool) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(7 + w as u64);
    let period = Duration::from_secs_f64(SERIES as f64 / rate as f64);
    let per_round = (w..SERIES).step_by(WRITERS).count() as u64;
    let (mut acked, mut refused) = (0, 0);
    let mut next = Instant::now();
    // Each round has its own timestamp, a millisecond apart at least.
    let mut t = now_ms();
    while !stop.load(Ordering::Relaxed) {
        t = t.max(now_ms()).saturating_add(1);
        let body = round(w, t, &mut rng);
        loop {
            let request = http::Request::post(format!("{url}/api/v1/write"))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone());
            let Ok(request) = request else { break };
            match http_agent().run(request) {
                Ok(r) if r.status() == 204 => {
                    acked += per_round;
                    break;
                }
                // 503 is backpressure: a sender retries, as Prometheus does.
                Ok(r) if r.status() == 503 => {
                    refused += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    refused += 1;
                    break;
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    (acked, refused)
}

/// Errors counted per 10 s since the run started, up to this many slots.
const ERROR_SLOTS: usize = 1000;

/// `clients` threads querying `url` until `stop`: latencies in µs, and errors per 10 s
/// since `epoch`.
fn query(url: &str, clients: usize, stop: &Arc<AtomicBool>, epoch: Instant) -> (Vec<u64>, Vec<u64>) {
    let errors: Arc<Vec<AtomicU64>> = Arc::new((0..ERROR_SLOTS).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, stop, errors) = (url.to_owned(), Arc::clone(stop), Arc::clone(&errors));
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    let shard = (k / QUERIES.len() % 10).to_string();
                    let q = encode_query(&QUERIES[k % QUERIES.len()].replace("{shard}", &shard));
                    k += 1;
                    let started = Instant::now();
                    match http_agent().get(format!("{url}/api/v1/query?query={q}")).call() {
                        Ok(r) if r.status() == 200 => {
                            latencies.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
                        }
                        _ => {
                            let slot = (epoch.elapsed().as_secs() / 10) as usize;
                            errors[slot.min(ERROR_SLOTS - 1)].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    all.sort_unstable();
    (all, errors.iter().map(|e| e.load(Ordering::Relaxed)).collect())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples of `soak_latency` Prometheus holds, counted a shard at a time so that no
/// query passes Prometheus' 50 million samples limit.
fn stored(prometheus: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for shard in 0..10 {
        let q = encode_query(&format!(
            "sum(count_over_time(soak_latency{{shard=\"{shard}\"}}[1d]))"
        ));
        let (body, _) = sketch_proxy_load_tests::get(&format!("{prometheus}/api/v1/query?query={q}"))?;
        let json: serde_json::Value = serde_json::from_str(&body)?;
        anyhow::ensure!(json["status"] == "success", "count failed: {body}");
        let value = json["data"]["result"][0]["value"][1].as_str().unwrap_or("0");
        total += value.parse::<f64>()? as u64;
    }
    Ok(total)
}

#[expect(clippy::print_stdout, reason = "the report is the program's output")]
fn main() -> anyhow::Result<()> {
    let args = args()?;
    let mut prometheus = Prometheus::start(&PrometheusOptions::default())?;
    let dir = tempfile::tempdir()?;
    let config = sketching_config(dir.path(), "soak_latency", RETAIN, &[])?;
    let (proxy, url) = start_proxy(&[
        format!("--config={}", config.display()),
        format!("--upstream={}", prometheus.url()),
    ])?;
    let pid = proxy.0.id();
    println!(
        "soak: {} s, {} samples/s over {SERIES} series, {} query clients{}",
        args.seconds,
        args.rate,
        args.clients,
        if args.outage {
            ", Prometheus stopped for 60 s in the middle"
        } else {
            ""
        }
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, stop, rate) = (url.clone(), Arc::clone(&stop), args.rate);
            std::thread::spawn(move || write(w, &url, rate, &stop))
        })
        .collect();
    let started = Instant::now();
    let query_stop = Arc::new(AtomicBool::new(false));
    let queries = {
        let (url, stop, clients) = (url.clone(), Arc::clone(&query_stop), args.clients);
        std::thread::spawn(move || query(&url, clients, &stop, started))
    };
    let mut rss = Vec::new();
    let (outage_from, outage_to) = ((args.seconds / 2).saturating_sub(30), args.seconds / 2 + 30);
    let mut stopped = false;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_secs(10));
        let at = started.elapsed().as_secs();
        rss.push((at, rss_mib(pid)));
        if args.outage && !stopped && at >= outage_from && at < outage_to {
            prometheus.stop();
            stopped = true;
            println!("{at:>5} s: Prometheus stopped");
        }
        if stopped && at >= outage_to {
            prometheus.restart()?;
            stopped = false;
            println!("{at:>5} s: Prometheus restarted");
        }
    }
    query_stop.store(true, Ordering::Relaxed);
    let (latencies, errors_by_slot) = queries.join().ok().context("query clients panicked")?;
    let query_errors: u64 = errors_by_slot.iter().sum();
    if stopped {
        prometheus.restart()?;
    }
    // The same clients against Prometheus alone for a minute, the writes still on, for
    // the latency comparison.
    let direct_stop = Arc::new(AtomicBool::new(false));
    let direct = {
        let (url, stop, clients) = (prometheus.url(), Arc::clone(&direct_stop), args.clients);
        let epoch = Instant::now();
        std::thread::spawn(move || query(&url, clients, &stop, epoch))
    };
    std::thread::sleep(Duration::from_secs(60));
    direct_stop.store(true, Ordering::Relaxed);
    let (direct_latencies, direct_errors) = direct.join().ok().context("direct clients panicked")?;
    let direct_errors: u64 = direct_errors.iter().sum();
    let written_for = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (mut acked, mut refused_writes) = (0, 0);
    for writer in writers {
        let (a, r) = writer.join().ok().context("writer panicked")?;
        acked += a;
        refused_writes += r;
    }
    let mut held = 0;
    let delivered = wait_until(
        Duration::from_secs(300),
        "every acknowledged sample to arrive",
        || {
            held = stored(&prometheus.url()).unwrap_or(0);
            held >= acked
        },
    );

    println!("\nproxy RSS (MiB) every 10 s:");
    for (at, mib) in &rss {
        println!("{at:>5} s  {mib:>8.1}");
    }
    let warm: Vec<f64> = rss
        .iter()
        .filter(|(at, _)| *at >= WARM_UP_S)
        .map(|(_, m)| *m)
        .collect();
    if let (Some(lo), Some(hi)) = (
        warm.iter().copied().reduce(f64::min),
        warm.iter().copied().reduce(f64::max),
    ) {
        println!(
            "after {WARM_UP_S} s: {lo:.1}–{hi:.1} MiB, spread {:.1}%",
            (hi - lo) / lo * 100.0
        );
    }
    println!(
        "\nwrites: {acked} samples acknowledged ({:.0}/s), {refused_writes} write answers other than 204 (503 retried)",
        acked as f64 / written_for
    );
    println!(
        "delivered: Prometheus holds {held} samples of {acked} acknowledged: {}",
        if delivered.is_ok() {
            "none lost"
        } else {
            "SAMPLES MISSING"
        }
    );
    let total = latencies.len() as u64 + query_errors;
    println!(
        "queries through the proxy: {total}, errors {query_errors} ({:.3}%), p50 {:.1} ms, p99 {:.1} ms",
        query_errors as f64 * 100.0 / total.max(1) as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    let timeline: Vec<String> = errors_by_slot
        .iter()
        .enumerate()
        .filter(|(_, e)| **e > 0)
        .map(|(slot, e)| format!("{}–{} s: {e}", slot * 10, slot * 10 + 10))
        .collect();
    println!("query errors through the proxy by 10 s: {}", timeline.join(", "));
    if args.outage {
        // Queries in flight when Prometheus came back may still fail for a moment.
        let recovered_from = usize::try_from(outage_to / 10 + 2)?;
        let after: u64 = errors_by_slot.iter().skip(recovered_from).sum();
        println!(
            "errors from {} s on (20 s after the restart): {after}",
            recovered_from * 10
        );
    }
    let direct_total = direct_latencies.len() as u64 + direct_errors;
    println!(
        "queries straight to Prometheus (60 s, writes on): {direct_total}, errors {direct_errors}, p50 {:.1} ms, p99 {:.1} ms",
        percentile(&direct_latencies, 0.5),
        percentile(&direct_latencies, 0.99)
    );
    drop(proxy);
    Ok(())
}
