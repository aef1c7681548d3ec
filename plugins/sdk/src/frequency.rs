//! Functions of the value frequencies (`distinct`, `entropy`, `l2`): each sample value,
//! compared as an exact float, is a key, and `f_v` counts the samples with value `v`.
//!
//! Keys are the value's bits (`-0.0` folded into `0.0`, every NaN into one NaN) run through
//! a bijective 64-bit mixer, so two keys never collide and hash maps need no hasher.

use std::collections::HashMap;
use std::sync::OnceLock;

use nohash_hasher::BuildNoHashHasher;

use crate::plugin::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, Summary, Window};

/// The three statistics of a frequency vector that the built-in functions need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    /// Number of distinct values (L0).
    pub distinct: f64,
    /// Σ f_v² (the square of L2).
    pub sum_squares: f64,
    /// Σ f_v·log2 f_v.
    pub sum_f_log_f: f64,
}

impl Moments {
    /// Shannon entropy in bits of the empirical value distribution of `n` samples.
    pub fn entropy(&self, n: u64) -> f64 {
        let n = n as f64;
        (n.log2() - self.sum_f_log_f / n).max(0.0)
    }

    /// sqrt(Σ f_v²).
    pub fn l2(&self) -> f64 {
        self.sum_squares.sqrt()
    }
}

fn f_log_f(count: u32) -> f64 {
    // Sliding windows update this twice per sample; small counts come from a table.
    const TABLED: usize = 4096;
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let compute = |c: u32| {
        // 0·log 0 is 0 by convention (and 1·log 1 is 0 anyway).
        if c <= 1 {
            0.0
        } else {
            f64::from(c) * f64::from(c).log2()
        }
    };
    match TABLE
        .get_or_init(|| (0..TABLED as u32).map(compute).collect())
        .get(count as usize)
    {
        Some(&v) => v,
        None => compute(count),
    }
}

/// The key of a value: its canonical bits, mixed (SplitMix64's finalizer, a bijection).
pub fn key(value: f64) -> u64 {
    let bits = if value == 0.0 {
        0
    } else if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    };
    let mut z = bits.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Exact window: a count per key plus running moments, updated in O(1) per sample.
#[derive(Debug, Default, Clone)]
pub struct FrequencyWindow {
    counts: HashMap<u64, u32, BuildNoHashHasher<u64>>,
    sum_squares: u64,
    sum_f_log_f: f64,
}

impl FrequencyWindow {
    /// The exact moments of the window.
    pub fn moments(&self) -> Moments {
        Moments {
            distinct: self.counts.len() as f64,
            sum_squares: self.sum_squares as f64,
            sum_f_log_f: self.sum_f_log_f.max(0.0),
        }
    }
}

impl Window for FrequencyWindow {
    fn push(&mut self, value: f64) {
        let count = self.counts.entry(key(value)).or_insert(0);
        self.sum_squares += 2 * u64::from(*count) + 1;
        self.sum_f_log_f += f_log_f(*count + 1) - f_log_f(*count);
        *count += 1;
    }

    fn pop(&mut self, value: f64) {
        let k = key(value);
        let Some(count) = self.counts.get_mut(&k) else {
            return;
        };
        self.sum_squares -= 2 * u64::from(*count) - 1;
        self.sum_f_log_f -= f_log_f(*count) - f_log_f(*count - 1);
        *count -= 1;
        if *count == 0 {
            self.counts.remove(&k);
        }
        if self.counts.is_empty() {
            // Drop the rounding residue the running sum collected.
            self.sum_f_log_f = 0.0;
        }
    }

    fn replace(&mut self, old: f64, new: f64) {
        // Discrete series often repeat a value; then the window does not change.
        if key(old) != key(new) {
            self.pop(old);
            self.push(new);
        }
    }

    fn clear(&mut self) {
        self.counts.clear();
        self.sum_squares = 0;
        self.sum_f_log_f = 0.0;
    }
}

/// A mergeable frequency summary: the exact count of every value while the values it
/// has seen number at most `capacity`; past that it only records that it overflowed.
///
/// Why no sketch past the capacity: a uniform sample over the distinct values (bottom-k
/// by key) misses the few heavy values that dominate L2 and entropy in skewed data, and
/// on Zipf-distributed integers over a million values its ratio estimates were 15-35%
/// off. A wrong answer is worse than a slow one, so an overflowed window is answered
/// exactly from the raw samples instead (see `docs/ARCHITECTURE.md`).
#[derive(Debug, Clone)]
pub struct FrequencyMap {
    capacity: usize,
    /// Sorted by key.
    keys: Vec<u64>,
    counts: Vec<u32>,
    overflowed: bool,
}

impl FrequencyMap {
    /// An empty summary holding at most `capacity` (≥ 16) distinct values.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(16),
            keys: Vec::new(),
            counts: Vec::new(),
            overflowed: false,
        }
    }

    /// Exact moments, or `None` once more than `capacity` distinct values were seen.
    pub fn moments(&self) -> Option<Moments> {
        if self.overflowed {
            return None;
        }
        let mut moments = Moments {
            distinct: self.keys.len() as f64,
            sum_squares: 0.0,
            sum_f_log_f: 0.0,
        };
        for &c in &self.counts {
            moments.sum_squares += f64::from(c) * f64::from(c);
            moments.sum_f_log_f += f_log_f(c);
        }
        Some(moments)
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.keys = Vec::new();
        self.counts = Vec::new();
    }
}

impl Summary for FrequencyMap {
    fn add(&mut self, value: f64) {
        if self.overflowed {
            return;
        }
        let k = key(value);
        match self.keys.binary_search(&k) {
            Ok(i) => self.counts[i] += 1,
            Err(_) if self.keys.len() == self.capacity => self.overflow(),
            Err(i) => {
                self.keys.insert(i, k);
                self.counts.insert(i, 1);
            }
        }
    }

    fn merge(&mut self, other: &Self) {
        if self.overflowed || other.overflowed {
            return self.overflow();
        }
        let cap = self.keys.len() + other.keys.len();
        let (mut keys, mut counts) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
        let (mut i, mut j) = (0, 0);
        loop {
            let (k, c) = match (self.keys.get(i), other.keys.get(j)) {
                (Some(&a), Some(&b)) if a == b => {
                    i += 1;
                    j += 1;
                    (a, self.counts[i - 1] + other.counts[j - 1])
                }
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    (a, self.counts[i - 1])
                }
                (Some(_) | None, Some(&b)) => {
                    j += 1;
                    (b, other.counts[j - 1])
                }
                (Some(&a), None) => {
                    i += 1;
                    (a, self.counts[i - 1])
                }
                (None, None) => break,
            };
            if keys.len() == self.capacity {
                return self.overflow();
            }
            keys.push(k);
            counts.push(c);
        }
        self.keys = keys;
        self.counts = counts;
    }

    fn shrink(&mut self) {
        self.keys.shrink_to_fit();
        self.counts.shrink_to_fit();
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.keys.capacity() * 8 + self.counts.capacity() * 4
    }
}

/// One statistic of the value frequencies, served exactly by [`FrequencyPlugin`]. The
/// built-in `distinct`, `entropy` and `l2` plugins are each one of these.
pub trait FrequencyStatistic: std::fmt::Debug + 'static {
    /// Plugin name.
    const PLUGIN: &'static str;
    /// Plugin version.
    const VERSION: &'static str;
    /// PromQL function served.
    const FUNCTION: &'static str;
    /// One line for `plugins list`.
    const DESCRIPTION: &'static str;
    /// The statistic from the exact moments of `samples` samples.
    fn answer(moments: Moments, samples: u64) -> f64;
}

/// Distinct values a tree node counts exactly before it gives up.
const FREQUENCY_CAPACITY: usize = 4096;

/// A plugin answering a [`FrequencyStatistic`] exactly: an exact sliding window below
/// 1,000 samples; above, the merged frequency maps of the block tree (cost bounded by the
/// number of distinct values, not the window length) while the window holds at most
/// 4,096 distinct values, and a scan of the raw samples beyond that.
#[derive(Debug)]
pub struct FrequencyPlugin<S>(std::marker::PhantomData<S>);

impl<S: FrequencyStatistic> Plugin for FrequencyPlugin<S> {
    type Summary = FrequencyMap;
    type Window = FrequencyWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: S::PLUGIN.into(),
            version: S::VERSION.into(),
            functions: vec![FunctionInfo {
                name: S::FUNCTION.into(),
                scalar_args: Vec::new(),
                bound: Bound {
                    relative: 0.0,
                    min_samples: 1000,
                },
                description: S::DESCRIPTION.into(),
            }],
        }
    }

    fn configure(options: &[(String, String)]) -> Result<Self, Error> {
        match options.first() {
            None => Ok(Self(std::marker::PhantomData)),
            Some((key, _)) => Err(Error::InvalidConfig(format!(
                "unknown option {key:?}; {} takes none",
                S::PLUGIN
            ))),
        }
    }

    fn summary(&self) -> FrequencyMap {
        FrequencyMap::new(FREQUENCY_CAPACITY)
    }

    fn window(&self) -> FrequencyWindow {
        FrequencyWindow::default()
    }

    fn exact(&self, _call: Call<'_>, window: &FrequencyWindow, samples: u64) -> f64 {
        S::answer(window.moments(), samples)
    }

    fn estimate(&self, _call: Call<'_>, summary: &FrequencyMap, samples: u64) -> Option<f64> {
        summary.moments().map(|m| S::answer(m, samples))
    }
}
