//! The plugin hot paths through the wasm boundary: insert, a Grafana panel's range call,
//! instant queries whose cost must not grow with the window, creating a sketch, and
//! (printed) memory per sketched series.
//!
//! `cargo bench -p sketch-proxy --bench plugins`; figures in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_proxy::plugin_host::{Host, Observer, PluginSet, RangeRequest, Settings, SketchConfig, TrapKind};

const SCRAPE_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
/// (function, scalar args, value distribution)
const FUNCTIONS: [(&str, &[f64], &str); 4] = [
    ("quantile_over_time", &[0.99], "lognormal"),
    ("distinct_over_time", &[], "zipf"),
    ("entropy_over_time", &[], "zipf"),
    ("l2_over_time", &[], "zipf"),
];

#[derive(Debug)]
struct Quiet;
impl Observer for Quiet {
    fn quarantined(&self, _: &str, _: TrapKind) {}
}

fn plugins() -> PluginSet {
    let settings = Settings {
        dir: None,
        cache_dir: None,
        instances: 1,
        memory_limit_bytes: 1 << 30,
        call_timeout: Duration::from_secs(10),
        grants: Default::default(),
    };
    let observer: Arc<dyn Observer> = Arc::new(Quiet);
    Host::global().unwrap().load(&settings, &observer)
}

fn values(distribution: &str, n: usize) -> Vec<f64> {
    seeded_values(distribution, n, 7)
}

fn seeded_values(distribution: &str, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    match distribution {
        "lognormal" => {
            let d = LogNormal::new(3.0, 1.0).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        _ => {
            let d = Zipf::new(200.0, 1.2).unwrap();
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
    }
}

fn config() -> SketchConfig {
    SketchConfig {
        retention_ms: DAY_MS + 3_600_000,
        options: Vec::new(),
    }
}

fn insert(c: &mut Criterion) {
    let set = plugins();
    let mut group = c.benchmark_group("insert_1000_samples");
    group.throughput(Throughput::Elements(1000));
    // The frequency plugins again on all-different values, where their summaries sample.
    let all_distinct = FUNCTIONS[1..].iter().map(|&(f, a, _)| (f, a, "lognormal"));
    for (function, _, distribution) in FUNCTIONS.into_iter().chain(all_distinct) {
        let sketch = set.for_function(function).unwrap().create(0, &config()).unwrap();
        let mut t = 0i64;
        let mut batch_no = 0u64;
        group.bench_function(format!("{function}/{distribution}"), |b| {
            // Fresh values per batch (all-different data must stay all-different), made
            // outside the timed part.
            b.iter_batched(
                || {
                    batch_no += 1;
                    let batch = seeded_values(distribution, 1000, batch_no);
                    let ts: Vec<i64> = (0..1000).map(|i| t + i * SCRAPE_MS).collect();
                    t += 1000 * SCRAPE_MS;
                    (ts, batch)
                },
                |(ts, batch)| sketch.insert(&ts, &batch).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A day of samples at 10 s (8,640) in one sketch.
fn day_sketch(set: &PluginSet, function: &str, distribution: &str) -> sketch_proxy::plugin_host::Sketch {
    let sketch = set.for_function(function).unwrap().create(0, &config()).unwrap();
    let n = (DAY_MS / SCRAPE_MS) as usize;
    let ts: Vec<i64> = (0..n as i64).map(|i| i * SCRAPE_MS).collect();
    sketch.insert(&ts, &values(distribution, n)).unwrap();
    sketch
}

fn range_panel(c: &mut Criterion) {
    let set = plugins();
    let mut group = c.benchmark_group("range_1440_steps_1h_window");
    // A 24 h panel at a 60 s step: 1,441 evaluation times, each over the last hour.
    let range = RangeRequest {
        start_ms: 3_600_000,
        end_ms: DAY_MS,
        step_ms: 60_000,
        window_ms: 3_600_000,
    };
    for (function, args, distribution) in FUNCTIONS {
        let sketch = day_sketch(&set, function, distribution);
        group.bench_function(function, |b| {
            b.iter(|| black_box(sketch.query_range(function, args, range).unwrap()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("instant_1d_window");
    for (function, args, distribution) in FUNCTIONS {
        let sketch = day_sketch(&set, function, distribution);
        group.bench_function(function, |b| {
            b.iter(|| black_box(sketch.query(function, args, 0, DAY_MS).unwrap()))
        });
    }
    group.finish();

    // P2 at a moving now: 25 h and a part-filled block of samples, the window's start
    // inside a block and its end past the newest sample, asked again (what the sketch
    // kept from the call before is reused) and cold.
    let mut group = c.benchmark_group("instant_1d_window_at_now");
    for (function, args, distribution) in FUNCTIONS {
        let sketch = set.for_function(function).unwrap().create(0, &config()).unwrap();
        let n = ((DAY_MS + 3_600_000) / SCRAPE_MS + 37) as usize;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * SCRAPE_MS).collect();
        sketch.insert(&ts, &values(distribution, n)).unwrap();
        let now = ts[n - 1] + 4_000;
        group.bench_function(function, |b| {
            b.iter(|| black_box(sketch.query(function, args, now - DAY_MS, now).unwrap()))
        });
        // Nothing reused from the call before: windows ending now and two hours
        // earlier, in turn.
        let mut earlier = false;
        group.bench_function(format!("{function}/cold"), |b| {
            b.iter(|| {
                earlier = !earlier;
                let end = if earlier { now - 7_200_000 } else { now };
                black_box(sketch.query(function, args, end - DAY_MS, end).unwrap())
            })
        });
        if function == "quantile_over_time" {
            // What every call costs whatever it does: a window with no samples.
            group.bench_function("empty_window", |b| {
                b.iter(|| black_box(sketch.query(function, args, now + 1, now + 2).unwrap()))
            });
        }
    }
    group.finish();
}

/// Windows of 10^4 to 10^6 all-different values: the frequency summaries are sampled, and
/// a query must cost about the same at every length.
fn long_windows(c: &mut Criterion) {
    let set = plugins();
    let n: usize = 1_000_000;
    let ts: Vec<i64> = (0..n as i64).map(|i| i * 1000).collect();
    let vs = values("lognormal", n);
    let retention = SketchConfig {
        retention_ms: n as i64 * 1000,
        options: Vec::new(),
    };
    let mut group = c.benchmark_group("instant_all_distinct");
    for function in ["distinct_over_time", "entropy_over_time", "l2_over_time"] {
        let sketch = set.for_function(function).unwrap().create(0, &retention).unwrap();
        for (t, v) in ts.chunks(10_000).zip(vs.chunks(10_000)) {
            sketch.insert(t, v).unwrap();
        }
        for window in [10_000i64, 100_000, 1_000_000] {
            // Both edges between block boundaries, so the raw edges are read too.
            let t1 = (n as i64 - 7) * 1000;
            let t0 = t1 - (window - 1) * 1000;
            group.bench_function(format!("{function}/{window}"), |b| {
                b.iter(|| black_box(sketch.query(function, &[], t0, t1).unwrap()))
            });
        }
    }
    group.finish();
}

#[expect(
    clippy::print_stderr,
    reason = "memory is reported next to criterion's timings"
)]
fn create_and_memory(c: &mut Criterion) {
    let set = plugins();
    let plugin = set.for_function("quantile_over_time").unwrap();
    c.bench_function("create_and_drop_sketch", |b| {
        b.iter(|| drop(black_box(plugin.create(0, &config()).unwrap())))
    });
    for (function, _, distribution) in FUNCTIONS {
        let sketch = day_sketch(&set, function, distribution);
        let bytes = sketch.memory_bytes().unwrap();
        eprintln!(
            "memory per series, 1 d at 10 s, {function} ({distribution}): {bytes} bytes ({:.1} B/sample)",
            bytes as f64 / 8640.0
        );
    }
}

criterion_group!(benches, insert, range_panel, long_windows, create_and_memory);
criterion_main!(benches);
