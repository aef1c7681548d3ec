//! Parsing time against query size, for the shapes of long queries that stay within
//! `limits:` (wide selectors, label lists, regexes) and for the deepest chains the
//! limits allow. Time per byte should stay flat as the size grows.
//!
//! `cargo bench -p sketch-proxy --bench parse`; figures in docs/benchmarks.md.

#![allow(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sketch_proxy::promql::shape::MAX_DEPTH;
use sketch_proxy::promql::{ShapeLimits, parse_within};

fn list(n: usize, item: impl Fn(usize) -> String, sep: &str) -> String {
    (0..n).map(item).collect::<Vec<_>>().join(sep)
}

fn shapes(n: usize) -> [(&'static str, String); 4] {
    [
        (
            "grouping labels",
            format!("sum by ({}) (up)", list(n, |i| format!("l{i}"), ",")),
        ),
        (
            "matchers",
            format!("up{{{}}}", list(n, |i| format!("l{i}=\"v\""), ",")),
        ),
        (
            "regex alternatives",
            format!("up{{a=~\"{}\"}}", list(n, |i| format!("v{i}"), "|")),
        ),
        (
            "sum of selectors",
            list(n.min(MAX_DEPTH), |i| format!("m{i}"), " + "),
        ),
    ]
}

fn parse(c: &mut Criterion) {
    let limits = ShapeLimits {
        max_bytes: usize::MAX,
        max_depth: MAX_DEPTH,
    };
    let mut group = c.benchmark_group("parse");
    for n in [250, 1000, 4000] {
        for (name, query) in shapes(n) {
            group.throughput(Throughput::Bytes(query.len() as u64));
            group.bench_function(format!("{name}/{n}"), |b| {
                b.iter(|| parse_within(black_box(&query), &limits).unwrap());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
