//! Quantiles: an exact sorted window, and a relative-error log histogram for large windows.

mod buckets;

use buckets::Buckets;

use crate::plugin::{Summary, Window};

/// Prometheus' `quantile(φ, values)` given a way to read the order statistics at two ranks
/// (`lower ≤ upper`, 0-based): NaN for no values or NaN φ, ±Inf outside `[0, 1]`, else
/// linear interpolation at rank `φ·(n-1)`.
pub fn prometheus_quantile(phi: f64, n: u64, ranks: impl Fn(u64, u64) -> (f64, f64)) -> f64 {
    if n == 0 || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    let rank = phi * (n - 1) as f64;
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min((n - 1) as f64);
    let weight = rank - rank.floor();
    let (lo, hi) = ranks(lower as u64, upper as u64);
    lo * (1.0 - weight) + hi * weight
}

/// Exact window: the values kept sorted in Prometheus' order, as integer keys so that
/// each step of a sliding window costs integer comparisons and one short memmove.
#[derive(Debug, Default, Clone)]
pub struct SortedWindow {
    sorted: Vec<u64>,
}

/// An integer key with Prometheus' order: every NaN first, then by value. `-0.0` sorts
/// just before `0.0`; Prometheus calls them equal, and its unstable sort may put them
/// either way.
fn order_key(v: f64) -> u64 {
    if v.is_nan() {
        return 0;
    }
    let bits = v.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

fn from_order_key(k: u64) -> f64 {
    if k == 0 {
        return f64::NAN;
    }
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

impl SortedWindow {
    /// The `i`-th smallest value (0-based); NaN when out of range.
    pub fn nth(&self, i: u64) -> f64 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.sorted.get(i))
            .map_or(f64::NAN, |&k| from_order_key(k))
    }

    /// Prometheus' quantile of the window.
    pub fn quantile(&self, phi: f64) -> f64 {
        prometheus_quantile(phi, self.sorted.len() as u64, |lo, hi| {
            (self.nth(lo), self.nth(hi))
        })
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

impl Window for SortedWindow {
    fn push(&mut self, value: f64) {
        let k = order_key(value);
        let at = self.sorted.partition_point(|&x| x <= k);
        self.sorted.insert(at, k);
    }

    fn pop(&mut self, value: f64) {
        let k = order_key(value);
        let at = self.sorted.partition_point(|&x| x < k);
        if self.sorted.get(at) == Some(&k) {
            self.sorted.remove(at);
        }
    }

    /// Moves only the keys between the old and the new position, instead of shifting
    /// the tail twice.
    fn replace(&mut self, old: f64, new: f64) {
        let (old, new) = (order_key(old), order_key(new));
        let from = self.sorted.partition_point(|&x| x < old);
        if self.sorted.get(from) != Some(&old) {
            let at = self.sorted.partition_point(|&x| x <= new);
            self.sorted.insert(at, new);
            return;
        }
        let to = self.sorted.partition_point(|&x| x <= new);
        if to > from {
            // `new` goes after `old`: shift the keys in between one to the left.
            self.sorted.copy_within(from + 1..to, from);
            self.sorted[to - 1] = new;
        } else {
            self.sorted.copy_within(to..from, to + 1);
            self.sorted[to] = new;
        }
    }

    fn clear(&mut self) {
        self.sorted.clear();
    }

    fn fill(&mut self, values: &[f64]) {
        self.sorted.clear();
        self.sorted.extend(values.iter().map(|&v| order_key(v)));
        self.sorted.sort_unstable();
    }
}

// Buckets are ordered slots: NaN, -Inf, negative buckets, zero, positive buckets, +Inf.
const SLOT_NAN: i32 = i32::MIN;
const SLOT_NEG_INF: i32 = i32::MIN + 1;
const SLOT_POS_INF: i32 = i32::MAX;
/// Keeps every finite key (|key| < ~2^17 for the accuracies allowed) away from 0 and the ends.
const KEY_OFFSET: i32 = 1 << 24;
/// Values closer to zero than this land in the zero bucket.
const MIN_INDEXABLE: f64 = 1e-300;

/// A DDSketch-style histogram: logarithmic buckets of width γ = (1+α)/(1−α), so every
/// value read back is within relative error α of a value in its bucket. Mergeable exactly
/// (bucket counts add), and sparse: a sorted list of (bucket, count).
///
/// A histogram stored in the tree (`shrink`) keeps its buckets packed, about 2 B per
/// bucket, so the histograms of single blocks fit the tree's byte budget and a window's
/// interior is merged from them instead of read raw; one being built counts densely
/// (see `buckets`).
#[derive(Debug, Clone)]
pub struct LogHistogram {
    ln_gamma: f64,
    gamma: f64,
    buckets: Buckets,
    total: u64,
}

impl LogHistogram {
    /// An empty histogram with relative accuracy `alpha`, which must be in `[0.0001, 0.5]`.
    pub fn new(alpha: f64) -> Self {
        let alpha = alpha.clamp(1e-4, 0.5);
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        Self {
            ln_gamma: gamma.ln(),
            gamma,
            buckets: Buckets::default(),
            total: 0,
        }
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.total
    }

    fn slot(&self, v: f64) -> i32 {
        if v.is_nan() {
            return SLOT_NAN;
        }
        if v.is_infinite() {
            return if v > 0.0 { SLOT_POS_INF } else { SLOT_NEG_INF };
        }
        let magnitude = v.abs();
        if magnitude < MIN_INDEXABLE {
            return 0;
        }
        let key = (magnitude.ln() / self.ln_gamma).ceil() as i32 + KEY_OFFSET;
        if v > 0.0 { key } else { -key }
    }

    fn representative(&self, slot: i32) -> f64 {
        match slot {
            SLOT_NAN => f64::NAN,
            SLOT_NEG_INF => f64::NEG_INFINITY,
            SLOT_POS_INF => f64::INFINITY,
            0 => 0.0,
            s => {
                let key = s.abs() - KEY_OFFSET;
                // The point of bucket (γ^(k-1), γ^k] with equal relative distance to both ends.
                let magnitude = 2.0 * (f64::from(key) * self.ln_gamma).exp() / (1.0 + self.gamma);
                if s > 0 { magnitude } else { -magnitude }
            }
        }
    }

    /// The `i`-th smallest value (0-based), within relative error α; NaN when out of range.
    pub fn nth(&self, i: u64) -> f64 {
        let mut seen = 0u64;
        for (slot, count) in self.buckets.iter() {
            seen += u64::from(count);
            if i < seen {
                return self.representative(slot);
            }
        }
        f64::NAN
    }

    /// Prometheus' quantile, with both neighbouring order statistics read from buckets.
    pub fn quantile(&self, phi: f64) -> f64 {
        prometheus_quantile(phi, self.total, |lo, hi| self.pair(lo, hi))
    }

    /// Values at ranks `lower ≤ upper`, in one pass over the buckets.
    fn pair(&self, lower: u64, upper: u64) -> (f64, f64) {
        let mut seen = 0u64;
        let mut lo = None;
        for (slot, count) in self.buckets.iter() {
            seen += u64::from(count);
            if lo.is_none() && lower < seen {
                lo = Some(self.representative(slot));
            }
            if upper < seen {
                return (lo.unwrap_or(f64::NAN), self.representative(slot));
            }
        }
        (lo.unwrap_or(f64::NAN), f64::NAN)
    }
}

impl Summary for LogHistogram {
    fn add(&mut self, value: f64) {
        self.total += 1;
        self.buckets.add(self.slot(value), 1);
    }

    fn merge(&mut self, other: &Self) {
        self.total += other.total;
        self.buckets.merge(&other.buckets);
    }

    fn extend(&mut self, values: &[f64]) {
        for &v in values {
            self.add(v);
        }
    }

    fn remove(&mut self, values: &[f64]) -> bool {
        for &v in values {
            self.total = self.total.saturating_sub(1);
            self.buckets.remove(self.slot(v));
        }
        true
    }

    fn shrink(&mut self) {
        self.buckets.pack();
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.buckets.memory_bytes()
    }
}
