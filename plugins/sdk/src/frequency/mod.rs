//! Functions of the value frequencies (`distinct`, `entropy`, `l2`): each sample value,
//! compared as an exact float, is a key, and `f_v` counts the samples with value `v`.
//!
//! Keys are the value's bits (`-0.0` folded into `0.0`, every NaN into one NaN) run through
//! a bijective 64-bit mixer, so two keys never collide and hash maps need no hasher.

mod sample;
mod summary;
mod window;

use std::sync::OnceLock;

pub use sample::{FrequencySample, HEAVY_VALUES, SAMPLE_SIZE};
pub use summary::{FrequencySummary, LG_REGISTERS};
pub use window::FrequencyWindow;

use crate::plugin::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo};

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

/// The keys of `values`, sorted (with repeats).
fn sorted_keys(values: &[f64]) -> Vec<u64> {
    let mut keys: Vec<u64> = values.iter().map(|&v| key(v)).collect();
    keys.sort_unstable();
    keys
}

/// The functions of [`FrequencyPlugin`], in the order of its `info`.
const FUNCTIONS: [(&str, &str); 3] = [
    (
        "distinct_over_time",
        "number of distinct sample values in the window",
    ),
    (
        "entropy_over_time",
        "Shannon entropy (bits) of the sample values in the window",
    ),
    (
        "l2_over_time",
        "square root of the sum of squared value frequencies in the window",
    ),
];

/// Relative error bound of every frequency function on windows of 1,000 samples or more.
pub const FREQUENCY_BOUND: f64 = 0.02;

/// The three functions of the value frequencies from one sketch: an exact sliding
/// window below 1,000 samples, and above that the merged [`FrequencySummary`] of the
/// block tree, whose size (and so a query's cost) is bounded whatever the window
/// length. One plugin for the three, so a series' samples and summaries are held once.
#[derive(Debug, Clone, Copy)]
pub struct FrequencyPlugin;

impl FrequencyPlugin {
    fn answer(call: Call<'_>, moments: Moments, samples: u64) -> f64 {
        match call.function {
            0 => moments.distinct,
            1 => moments.entropy(samples),
            _ => moments.l2(),
        }
    }
}

impl Plugin for FrequencyPlugin {
    type Summary = FrequencySummary;
    type Window = FrequencyWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "frequency".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            functions: FUNCTIONS
                .iter()
                .map(|(name, description)| FunctionInfo {
                    name: (*name).into(),
                    scalar_args: Vec::new(),
                    bound: Bound {
                        relative: FREQUENCY_BOUND,
                        min_samples: 1000,
                    },
                    description: (*description).into(),
                })
                .collect(),
        }
    }

    fn configure(options: &[(String, String)]) -> Result<Self, Error> {
        match options.first() {
            None => Ok(Self),
            Some((key, _)) => Err(Error::InvalidConfig(format!(
                "unknown option {key:?}; frequency takes none"
            ))),
        }
    }

    fn summary(&self) -> FrequencySummary {
        FrequencySummary::default()
    }

    fn window(&self) -> FrequencyWindow {
        FrequencyWindow::default()
    }

    fn exact(&self, call: Call<'_>, window: &FrequencyWindow, samples: u64) -> Option<f64> {
        Some(Self::answer(call, window.moments(), samples))
    }

    fn estimate(&self, call: Call<'_>, summary: &FrequencySummary, samples: u64) -> Option<f64> {
        if call.function == 0 {
            return Some(summary.distinct());
        }
        Some(Self::answer(call, summary.sample().moments(samples), samples))
    }
}
