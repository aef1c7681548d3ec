//! Functions of the value frequencies (`distinct`, `entropy`, `l2`): each sample value,
//! compared as an exact float, is a key, and `f_v` counts the samples with value `v`.
//!
//! Keys are the value's bits (`-0.0` folded into `0.0`, every NaN into one NaN) run through
//! a bijective 64-bit mixer, so two keys never collide and hash maps need no hasher.

mod distinct;
mod sample;
mod window;

use std::sync::OnceLock;

pub use distinct::DistinctSketch;
pub use sample::{FrequencySample, HEAVY_VALUES, SAMPLE_SIZE};
pub use window::FrequencyWindow;

use crate::plugin::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, Summary};

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

/// One statistic of the value frequencies, served by [`FrequencyPlugin`]. The built-in
/// `distinct`, `entropy` and `l2` plugins are each one of these.
pub trait FrequencyStatistic: std::fmt::Debug + 'static {
    /// Plugin name.
    const PLUGIN: &'static str;
    /// Plugin version.
    const VERSION: &'static str;
    /// PromQL function served.
    const FUNCTION: &'static str;
    /// One line for `plugins list`.
    const DESCRIPTION: &'static str;
    /// Relative error bound claimed for windows of at least 1,000 samples.
    const BOUND: f64;
    /// Summary kept per block and tree node.
    type Summary: Summary + Default;
    /// The statistic from the exact moments of `samples` samples.
    fn answer(moments: Moments, samples: u64) -> f64;
    /// The statistic from a summary of `samples` samples.
    fn estimate(summary: &Self::Summary, samples: u64) -> f64;
}

/// A plugin answering a [`FrequencyStatistic`]: an exact sliding window below 1,000
/// samples, and above that the merged summaries of the block tree, whose size (and so a
/// query's cost) is bounded whatever the window length.
#[derive(Debug)]
pub struct FrequencyPlugin<S>(std::marker::PhantomData<S>);

impl<S: FrequencyStatistic> Plugin for FrequencyPlugin<S> {
    type Summary = S::Summary;
    type Window = FrequencyWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: S::PLUGIN.into(),
            version: S::VERSION.into(),
            functions: vec![FunctionInfo {
                name: S::FUNCTION.into(),
                scalar_args: Vec::new(),
                bound: Bound {
                    relative: S::BOUND,
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

    fn summary(&self) -> S::Summary {
        S::Summary::default()
    }

    fn window(&self) -> FrequencyWindow {
        FrequencyWindow::default()
    }

    fn exact(&self, _call: Call<'_>, window: &FrequencyWindow, samples: u64) -> f64 {
        S::answer(window.moments(), samples)
    }

    fn estimate(&self, _call: Call<'_>, summary: &S::Summary, samples: u64) -> Option<f64> {
        Some(S::estimate(summary, samples))
    }
}
