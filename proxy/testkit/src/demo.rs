//! Deterministic demo data in the OpenMetrics text format, for `promtool tsdb
//! create-blocks-from openmetrics`: the same seed gives the same bytes.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

/// Start of the fixed window the integration tests query (2023-11-14T22:13:20Z).
pub const TEST_START: i64 = 1_700_000_000;
/// End of that window: two hours of data (one TSDB block).
pub const TEST_END: i64 = TEST_START + 2 * 3600;
/// Scrape interval of the demo data, in seconds.
pub const STEP: i64 = 15;

const INSTANCES: [&str; 4] = ["host-0:9100", "host-1:9100", "host-2:9100", "host-3:9100"];
const BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// OpenMetrics text with samples every [`STEP`] seconds in `[start, end)` (Unix
/// seconds): `up`, a request counter with a reset, a latency gauge and histogram, and a
/// coarse temperature gauge whose values repeat.
pub fn openmetrics(start: i64, end: i64) -> String {
    let mut out = String::new();
    let times: Vec<i64> = (start..end).step_by(STEP as usize).collect();
    let mut rng = StdRng::seed_from_u64(42);

    out.push_str("# TYPE up gauge\n");
    for instance in INSTANCES {
        for &t in &times {
            let _ = writeln!(out, "up{{instance=\"{instance}\",job=\"node\"}} 1 {t}");
        }
    }

    out.push_str("# TYPE demo_http_requests counter\n# HELP demo_http_requests Requests served.\n");
    for (i, instance) in INSTANCES.iter().enumerate() {
        for method in ["GET", "POST"] {
            for code in ["200", "500"] {
                let base = if code == "200" { 20.0 } else { 0.5 } * (i as f64 + 1.0);
                let mut value = 0.0_f64;
                for (n, &t) in times.iter().enumerate() {
                    // One reset on host-3 in the middle, so rate() has one to handle.
                    if i == 3 && n == times.len() / 2 {
                        value = 0.0;
                    }
                    value += (base * rng.random_range(0.5..1.5)).round();
                    let _ = writeln!(
                        out,
                        "demo_http_requests_total{{code=\"{code}\",instance=\"{instance}\",job=\"api\",method=\"{method}\"}} {value} {t}"
                    );
                }
            }
        }
    }

    out.push_str("# TYPE demo_request_duration_seconds gauge\n");
    let latency = LogNormal::new(-3.0, 0.8).unwrap_or_else(|_| unreachable_distribution());
    for instance in INSTANCES {
        for &t in &times {
            let v: f64 = latency.sample(&mut rng);
            let _ = writeln!(
                out,
                "demo_request_duration_seconds{{instance=\"{instance}\",job=\"api\"}} {v} {t}"
            );
        }
    }

    out.push_str("# TYPE demo_http_request_duration_seconds histogram\n");
    for instance in INSTANCES {
        let mut counts = [0u64; BUCKETS.len() + 1];
        let mut sum = 0.0;
        for &t in &times {
            for _ in 0..10 {
                let v: f64 = latency.sample(&mut rng);
                sum += v;
                let slot = BUCKETS.iter().position(|b| v <= *b).unwrap_or(BUCKETS.len());
                counts[slot] += 1;
            }
            let mut cumulative = 0;
            for (b, le) in BUCKETS.iter().enumerate() {
                cumulative += counts[b];
                let _ = writeln!(
                    out,
                    "demo_http_request_duration_seconds_bucket{{instance=\"{instance}\",job=\"api\",le=\"{le}\"}} {cumulative} {t}"
                );
            }
            cumulative += counts[BUCKETS.len()];
            let _ = writeln!(
                out,
                "demo_http_request_duration_seconds_bucket{{instance=\"{instance}\",job=\"api\",le=\"+Inf\"}} {cumulative} {t}"
            );
            let _ = writeln!(
                out,
                "demo_http_request_duration_seconds_sum{{instance=\"{instance}\",job=\"api\"}} {sum} {t}"
            );
            let _ = writeln!(
                out,
                "demo_http_request_duration_seconds_count{{instance=\"{instance}\",job=\"api\"}} {cumulative} {t}"
            );
        }
    }

    out.push_str("# TYPE demo_temperature_celsius gauge\n");
    for room in ["kitchen", "lab"] {
        for &t in &times {
            let phase = (t - start) as f64 / 3600.0 * std::f64::consts::TAU;
            let v = ((20.0 + 3.0 * phase.sin() + rng.random_range(-1.0..1.0)) * 2.0).round() / 2.0;
            let _ = writeln!(out, "demo_temperature_celsius{{room=\"{room}\"}} {v} {t}");
        }
    }
    out.push_str("# EOF\n");
    out
}

#[expect(clippy::panic, reason = "constant, valid distribution parameters")]
fn unreachable_distribution() -> LogNormal<f64> {
    panic!("LogNormal(-3, 0.8) is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_window_gives_same_bytes() {
        assert_eq!(
            openmetrics(TEST_START, TEST_START + 60),
            openmetrics(TEST_START, TEST_START + 60)
        );
    }

    #[test]
    fn every_family_is_present_and_ends_with_eof() {
        let text = openmetrics(TEST_START, TEST_START + 60);
        for family in [
            "up{",
            "demo_http_requests_total{",
            "demo_request_duration_seconds{",
            "demo_http_request_duration_seconds_bucket{",
            "demo_temperature_celsius{",
        ] {
            assert!(text.contains(family), "{family}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
