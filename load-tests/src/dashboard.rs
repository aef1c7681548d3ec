//! The dashboard data set and query set of the engine's load tests: a day of 100
//! series at a 10 s scrape (counters, gauges, and 10 classic histograms of 11 buckets),
//! and common 24 h dashboard queries.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

/// First sample, Unix seconds.
pub const START: i64 = 1_700_000_000;
/// Length of the data, seconds.
pub const DAY: i64 = 86_400;
/// Seconds between samples.
pub const SCRAPE: i64 = 10;
/// Counters, and gauges.
pub const SERIES: usize = 100;
/// Classic histograms.
pub const HISTOGRAMS: usize = 10;
/// Their bucket bounds (and +Inf).
pub const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The dashboard queries, run as 24 h ranges at a 60 s step.
pub const QUERIES: [&str; 6] = [
    "count_over_time(bench_requests_total[1d])",
    "count_over_time(bench_latency_seconds[1d])",
    "rate(bench_requests_total[5m])",
    "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(bench_duration_seconds_bucket[5m])))",
    "quantile_over_time(0.99, bench_latency_seconds[1h])",
];

/// The whole day of data, in OpenMetrics text for `promtool tsdb create-blocks-from`.
pub fn openmetrics() -> String {
    openmetrics_of(|_| true)
}

/// The day of data of the series whose `instance` label number `keep` accepts (the same
/// values whatever is kept): `keep(i)` over a partition of the numbers splits the data
/// into shards holding whole series.
pub fn openmetrics_of(keep: impl Fn(usize) -> bool) -> String {
    let mut out = String::with_capacity(400 << 20);
    let mut rng = StdRng::seed_from_u64(7);
    let latency = LogNormal::new(-3.0, 0.8).unwrap_or_else(|_| unreachable!("valid parameters"));
    let times: Vec<i64> = (START..START + DAY).step_by(SCRAPE as usize).collect();
    out.push_str("# TYPE bench_requests counter\n");
    for s in 0..SERIES {
        let mut value = 0.0_f64;
        for &t in &times {
            value += rng.random_range(0.0..100.0_f64).round();
            if keep(s) {
                let _ = writeln!(
                    out,
                    "bench_requests_total{{instance=\"host-{s}\",job=\"job-{}\"}} {value} {t}",
                    s % 5
                );
            }
        }
    }
    out.push_str("# TYPE bench_latency_seconds gauge\n");
    for s in 0..SERIES {
        for &t in &times {
            let v: f64 = latency.sample(&mut rng);
            if keep(s) {
                let _ = writeln!(out, "bench_latency_seconds{{instance=\"host-{s}\"}} {v} {t}");
            }
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
        if keep(h) {
            out.push_str(&lines);
        }
    }
    out.push_str("# EOF\n");
    out
}
