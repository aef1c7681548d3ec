//! [`FrequencySample`]: value frequencies, exact up to a capacity, then the heavy values
//! plus a coordinated sample of the rest.

use super::{Moments, f_log_f};
use crate::plugin::Summary;

/// Distinct values kept: every value up to this many, then the sample's size.
pub const SAMPLE_SIZE: usize = 8192;
/// Heavy values tracked by count once the summary samples.
pub const HEAVY_VALUES: usize = 1024;

/// A mergeable summary of value frequencies for `Σ g(f_v)` statistics (L2, entropy).
///
/// While it has seen at most [`SAMPLE_SIZE`] distinct values it holds all of them with
/// exact counts. Past that it keeps three things:
///
/// - the [`SAMPLE_SIZE`] values with the smallest keys (keys are mixed hashes, so this is
///   a uniform sample of the distinct values, the same one in every node), with exact
///   counts: a value among the smallest keys of a union is among the smallest keys of
///   every part it occurs in, so merged counts stay exact;
/// - the [`HEAVY_VALUES`] values with the largest counts, whose terms dominate L2 and
///   entropy in skewed data and which a uniform sample would usually miss, each with a
///   lower and an upper bound on its count (equal when every part knew it);
/// - `floor`, an upper bound on the count of any value missing from the heavy list.
///
/// The estimate splits the values by count at `floor`. Every value above it is sampled
/// or on the heavy list, so that part is summed directly. The rest is estimated from
/// the sampled values at or below `floor` (Horvitz–Thompson); the split depends on
/// counts only, never on keys, which keeps that estimate unbiased. Only the excess over
/// one sample per value (`f(f-1)`, `f·log f`) is estimated, so windows of all-different
/// values stay exact.
#[derive(Debug, Clone, Default)]
pub struct FrequencySample {
    /// Sorted ascending; all values, or the smallest [`SAMPLE_SIZE`] keys.
    keys: Vec<u64>,
    counts: Vec<u32>,
    sampled: bool,
    /// Sorted by key; empty unless `sampled`.
    heavy: Vec<Heavy>,
    /// Upper bound on the count of a value not on the heavy list; 0 unless `sampled`.
    floor: u32,
}

#[derive(Debug, Clone, Copy)]
struct Heavy {
    key: u64,
    low: u32,
    high: u32,
}

impl FrequencySample {
    /// Whether the summary still holds every value it has seen.
    pub fn is_exact(&self) -> bool {
        !self.sampled
    }

    /// The moments of a window of `samples` samples: exact while [`Self::is_exact`],
    /// estimated otherwise.
    pub fn moments(&self, samples: u64) -> Moments {
        let mut known = Sums::default();
        if !self.sampled {
            self.counts.iter().for_each(|&c| known.add(c));
            return known.moments(samples, &Sums::default(), 1.0);
        }
        let threshold = self.threshold();
        let mut light = Sums::default();
        for (&key, &count) in self.keys.iter().zip(&self.counts) {
            if count > self.floor {
                known.add(count);
            } else if key != threshold {
                light.add(count);
            }
        }
        // Off the sample, a heavy value counts with what is known for sure of it.
        for h in self
            .heavy
            .iter()
            .filter(|h| h.key > threshold && h.low > self.floor)
        {
            known.add(h.low);
        }
        // Rank-conditioning: below the largest sampled key every value was kept with
        // probability threshold / 2^64.
        let probability = (threshold as f64 + 1.0) / 18_446_744_073_709_551_616.0;
        known.moments(samples, &light, probability)
    }

    /// The largest sampled key; keys above it are not in the sample.
    fn threshold(&self) -> u64 {
        if self.sampled {
            self.keys.last().copied().unwrap_or(u64::MAX)
        } else {
            u64::MAX
        }
    }

    /// Bounds on the count of `key`.
    fn count_of(&self, key: u64) -> (u32, u32) {
        if let Ok(i) = self.keys.binary_search(&key) {
            return (self.counts[i], self.counts[i]);
        }
        if key <= self.threshold() {
            return (0, 0);
        }
        match self.heavy.binary_search_by_key(&key, |h| h.key) {
            Ok(i) => (self.heavy[i].low, self.heavy[i].high),
            Err(_) => (0, self.floor),
        }
    }

    /// Candidates for the heavy list that this part contributes, and a bound on the
    /// count of every other value.
    fn heavy_candidates(&self, out: &mut Vec<u64>) -> u32 {
        if self.sampled {
            out.extend(self.heavy.iter().map(|h| h.key));
            self.floor
        } else {
            top_by_count(&self.keys, &self.counts, out)
        }
    }

    /// Every value of `values` with its exact count, however many there are (a merge
    /// cuts it down to the sample).
    pub(crate) fn of(values: &[f64]) -> Self {
        Self::from_sorted_keys(&super::sorted_keys(values))
    }

    /// The keys held, ascending: every value's while exact.
    pub(crate) fn keys(&self) -> &[u64] {
        &self.keys
    }

    fn from_sorted_keys(sorted: &[u64]) -> Self {
        let mut out = Self::default();
        for &k in sorted {
            if out.keys.last() == Some(&k) {
                if let Some(c) = out.counts.last_mut() {
                    *c += 1;
                }
            } else {
                out.keys.push(k);
                out.counts.push(1);
            }
        }
        out
    }
}

/// Running `Σ f(f-1)`, `Σ f·log2 f` and value count.
#[derive(Debug, Default)]
struct Sums {
    excess_squares: f64,
    f_log_f: f64,
    values: f64,
}

impl Sums {
    fn add(&mut self, count: u32) {
        let c = f64::from(count);
        self.excess_squares += c * (c - 1.0);
        self.f_log_f += f_log_f(count);
        self.values += 1.0;
    }

    /// These sums plus `light` scaled up from a sample kept with `probability`.
    fn moments(&self, samples: u64, light: &Self, probability: f64) -> Moments {
        Moments {
            distinct: self.values + light.values / probability,
            sum_squares: samples as f64 + self.excess_squares + light.excess_squares / probability,
            sum_f_log_f: self.f_log_f + light.f_log_f / probability,
        }
    }
}

/// The union of two sorted key/count lists, counts of equal keys added.
fn merge_counts(a: (&[u64], &[u32]), b: (&[u64], &[u32])) -> (Vec<u64>, Vec<u32>) {
    let mut keys = Vec::with_capacity(a.0.len() + b.0.len());
    let mut counts = Vec::with_capacity(keys.capacity());
    let (mut i, mut j) = (0, 0);
    while i < a.0.len() && j < b.0.len() {
        let (ka, kb) = (a.0[i], b.0[j]);
        keys.push(ka.min(kb));
        let mut c = 0;
        if ka <= kb {
            c += a.1[i];
            i += 1;
        }
        if kb <= ka {
            c += b.1[j];
            j += 1;
        }
        counts.push(c);
    }
    for (rest_keys, rest_counts) in [(&a.0[i..], &a.1[i..]), (&b.0[j..], &b.1[j..])] {
        keys.extend_from_slice(rest_keys);
        counts.extend_from_slice(rest_counts);
    }
    (keys, counts)
}

/// Pushes the keys of the [`HEAVY_VALUES`] largest counts (ties to the smaller key, so
/// merges are deterministic) and returns the largest count left out.
fn top_by_count(keys: &[u64], counts: &[u32], out: &mut Vec<u64>) -> u32 {
    let mut order: Vec<(u32, u64)> = counts.iter().copied().zip(keys.iter().copied()).collect();
    let mut rest = 0;
    if order.len() > HEAVY_VALUES {
        order.select_nth_unstable_by(HEAVY_VALUES, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        rest = order[HEAVY_VALUES..].iter().map(|o| o.0).max().unwrap_or(0);
        order.truncate(HEAVY_VALUES);
    }
    out.extend(order.into_iter().map(|(_, k)| k));
    rest
}

impl Summary for FrequencySample {
    fn add(&mut self, value: f64) {
        self.extend(&[value]);
    }

    fn extend(&mut self, values: &[f64]) {
        let block = Self::from_sorted_keys(&super::sorted_keys(values));
        if self.keys.is_empty() && !self.sampled {
            *self = block;
        } else {
            self.merge(&block);
        }
    }

    fn merge(&mut self, other: &Self) {
        *self = self.merged(other);
    }

    fn merged(&self, other: &Self) -> Self {
        // Sampled parts only know the keys up to their threshold.
        let limit = self.threshold().min(other.threshold());
        let (mut keys, mut counts) = merge_counts((&self.keys, &self.counts), (&other.keys, &other.counts));
        let known = keys.partition_point(|&k| k <= limit);
        keys.truncate(known);
        counts.truncate(known);
        if !self.sampled && !other.sampled && keys.len() <= SAMPLE_SIZE {
            return Self {
                keys,
                counts,
                ..Self::default()
            };
        }
        let mut candidates = Vec::with_capacity(4 * HEAVY_VALUES);
        let mut floor = if !self.sampled && !other.sampled {
            // Both parts were complete: so is the merged map, before it is cut.
            top_by_count(&keys, &counts, &mut candidates)
        } else {
            self.heavy_candidates(&mut candidates) + other.heavy_candidates(&mut candidates)
        };
        candidates.sort_unstable();
        candidates.dedup();
        let mut heavy: Vec<Heavy> = candidates
            .into_iter()
            .map(|key| {
                let (a_low, a_high) = self.count_of(key);
                let (b_low, b_high) = other.count_of(key);
                Heavy {
                    key,
                    low: a_low + b_low,
                    high: a_high + b_high,
                }
            })
            .collect();
        if heavy.len() > HEAVY_VALUES {
            heavy.select_nth_unstable_by(HEAVY_VALUES, |a, b| b.low.cmp(&a.low).then(a.key.cmp(&b.key)));
            floor = floor.max(heavy[HEAVY_VALUES..].iter().map(|h| h.high).max().unwrap_or(0));
            heavy.truncate(HEAVY_VALUES);
        }
        heavy.sort_unstable_by_key(|h| h.key);
        keys.truncate(SAMPLE_SIZE);
        counts.truncate(SAMPLE_SIZE);
        Self {
            keys,
            counts,
            sampled: true,
            heavy,
            floor,
        }
    }

    fn shrink(&mut self) {
        self.keys.shrink_to_fit();
        self.counts.shrink_to_fit();
        self.heavy.shrink_to_fit();
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.keys.capacity() * 8
            + self.counts.capacity() * 4
            + self.heavy.capacity() * size_of::<Heavy>()
    }
}
