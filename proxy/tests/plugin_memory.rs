//! The memory a built-in plugin reports for its sketches agrees with what they take:
//! the growth of the plugin instance's linear memory (the part of the proxy's RSS that
//! sketches hold, allocator overhead and free space included) stays within 25% of the
//! sum of `memory-bytes` over its sketches.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod guest_support;

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, LogNormal, Zipf};
use sketch_proxy::plugin_host::{Host, Observer, Settings};

const SKETCHES: usize = 200;
const DAY: usize = 8640;
const STEP_MS: i64 = 10_000;

fn values(i: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(i as u64);
    if i.is_multiple_of(2) {
        LogNormal::new(3.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(DAY)
            .collect()
    } else {
        Zipf::new(1000.0, 1.2)
            .unwrap()
            .sample_iter(&mut rng)
            .take(DAY)
            .collect()
    }
}

#[test]
fn reported_memory_agrees_with_linear_memory_growth() {
    let settings = Settings {
        instances: 1,
        memory_limit_bytes: 1 << 30,
        ..guest_support::settings(None)
    };
    let observer: Arc<dyn Observer> = Arc::new(guest_support::Recorder::default());
    let set = Host::global().unwrap().load(&settings, &observer);
    let timestamps: Vec<i64> = (0..DAY as i64).map(|i| i * STEP_MS).collect();
    for name in ["quantile", "frequency", "stats"] {
        let plugin = set.by_name(name).unwrap();
        let first = plugin
            .create(0, &guest_support::config(26 * 3_600_000, &[]))
            .unwrap();
        let baseline = plugin.linear_memory_bytes();
        let mut reported = 0;
        let mut sketches = vec![first];
        for i in 0..SKETCHES {
            let sketch = plugin
                .create(i as u64, &guest_support::config(26 * 3_600_000, &[]))
                .unwrap();
            let v = values(i);
            for (t, x) in timestamps.chunks(180).zip(v.chunks(180)) {
                sketch.insert(t, x).unwrap();
            }
            reported += sketch.memory_bytes().unwrap();
            sketches.push(sketch);
        }
        let grown = plugin.linear_memory_bytes() - baseline;
        let ratio = grown as f64 / reported as f64;
        println!("{name}: reported {reported} B, linear memory grew {grown} B ({ratio:.2}×)");
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{name}: reported {reported} B, linear memory grew {grown} B ({ratio:.2}×)"
        );
    }
}
