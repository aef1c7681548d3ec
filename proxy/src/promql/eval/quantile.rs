//! Quantiles: over sample values (`quantile`, `quantile_over_time`) and over classic
//! histogram buckets (`histogram_quantile`), as Prometheus 2.42's `quantile.go`.

use std::collections::HashMap;

use super::value::{Labels, Sample, Vector};

/// The `q` quantile of `values` (sorted in place), interpolating between neighbours.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // Prometheus sorts NaN first.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `histogram_quantile` over the classic buckets in `vector`: one result per label set
/// without `le`, named without `__name__`.
pub(super) fn histogram_quantile(q: f64, vector: &[Sample]) -> Vector {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let le = ["le".to_owned()];
    for s in vector {
        let Some(upper) = parse_go_float(s.labels.get("le")) else {
            continue;
        };
        let key = s.labels.key(&le, false);
        let at = *index.entry(key).or_insert_with(|| {
            groups.push((s.labels.retain(|n| n != "le" && n != "__name__"), Vec::new()));
            groups.len() - 1
        });
        groups[at].1.push((upper, s.v));
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| Sample {
            labels,
            t: 0,
            v: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

/// A bucket bound as Go's `strconv.ParseFloat` reads it (decimal, `Inf`, `NaN`, any
/// case, signed); Rust's parser agrees on all of these.
fn parse_go_float(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// `bucketQuantile`: buckets are (upper bound, cumulative count).
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds, then force counts to be monotonic.
    buckets.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    let mut max = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|b| b.1 < rank);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}
