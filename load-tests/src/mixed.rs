//! The mixed data set of the scale and tier load tests: series `m{series="s00042"}` at
//! a 10 s scrape, half lognormal latencies and half Zipf-distributed integer ids; and
//! counters `c{series="s00042"}` that restart now and then.

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_proxy::prompb::{Label, Sample, TimeSeries, WriteRequest};

/// Milliseconds between samples.
pub const SCRAPE_MS: i64 = 10_000;

/// Values of one series over samples `from..to`: series with an even index are
/// lognormal latencies, the others Zipf-distributed integer ids; seeded by series and
/// position, so the same call gives the same values.
pub fn values(series: usize, from: usize, to: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64((series as u64) << 32 | from as u64);
    if series.is_multiple_of(2) {
        let lognormal = LogNormal::new(3.0, 1.0).unwrap_or_else(|_| unreachable!("valid parameters"));
        (from..to).map(|_| lognormal.sample(&mut rng)).collect()
    } else {
        let zipf = Zipf::new(1000.0, 1.2).unwrap_or_else(|_| unreachable!("valid parameters"));
        (from..to).map(|_| zipf.sample(&mut rng)).collect()
    }
}

/// Samples between a counter's restarts.
pub const COUNTER_CYCLE: usize = 30_000;

/// Values of counter `series` over samples `from..to`: integers rising by 3 to 23 a
/// sample, restarting near zero every [`COUNTER_CYCLE`] samples (each series at another
/// phase, so that some restart within any day).
pub fn counter_values(series: usize, from: usize, to: usize) -> Vec<f64> {
    (from..to)
        .map(|i| {
            let at = (i + series * 997) % COUNTER_CYCLE;
            (at * 13 + (i * 7919) % 11) as f64
        })
        .collect()
}

/// The snappy protobuf remote-write body of samples `from..to` of `series`, the first
/// sample of each at `start` (ms): the mixed series `m`.
pub fn encode(start: i64, series: std::ops::Range<usize>, from: usize, to: usize) -> Vec<u8> {
    encode_named("m", values, start, series, from, to)
}

/// As [`encode`], of metric `name` with the values `values(series, from, to)`.
pub fn encode_named(
    name: &str,
    values: fn(usize, usize, usize) -> Vec<f64>,
    start: i64,
    series: std::ops::Range<usize>,
    from: usize,
    to: usize,
) -> Vec<u8> {
    encode_values(name, start, from, series.map(|s| (s, values(s, from, to))))
}

/// The snappy protobuf remote-write body of series `name{series="s00042"}`, given as
/// (index, values): value `k` of each at `start + (from + k) · SCRAPE_MS`.
pub fn encode_values(
    name: &str,
    start: i64,
    from: usize,
    series: impl Iterator<Item = (usize, Vec<f64>)>,
) -> Vec<u8> {
    let request = WriteRequest {
        timeseries: series
            .map(|(s, values)| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".to_owned(),
                        value: name.to_owned(),
                    },
                    Label {
                        name: "series".to_owned(),
                        value: format!("s{s:05}"),
                    },
                ],
                samples: values
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| Sample {
                        value,
                        timestamp: start + (from + i) as i64 * SCRAPE_MS,
                    })
                    .collect(),
                ..TimeSeries::default()
            })
            .collect(),
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap_or_else(|_| unreachable!("a request is far below snappy's 4 GiB"))
}
