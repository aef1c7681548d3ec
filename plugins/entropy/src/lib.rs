//! `entropy_over_time(v[w])`: Shannon entropy in bits of the sample values in the window, over the frequencies of exact sample values (PromSketch's
//! definition). Exact below 1,000 samples, within 2% above.

use sketch_plugin_sdk::{FrequencyPlugin, FrequencySample, FrequencyStatistic, Moments, export_plugin};

/// The statistic.
#[derive(Debug)]
pub struct Entropy;

impl FrequencyStatistic for Entropy {
    const PLUGIN: &'static str = "entropy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const FUNCTION: &'static str = "entropy_over_time";
    const DESCRIPTION: &'static str = "Shannon entropy in bits of the sample values in the window";

    const BOUND: f64 = 0.02;
    type Summary = FrequencySample;

    fn answer(moments: Moments, samples: u64) -> f64 {
        moments.entropy(samples)
    }

    fn estimate(summary: &FrequencySample, samples: u64) -> f64 {
        summary.moments(samples).entropy(samples)
    }
}

/// The exported plugin.
pub type EntropyPlugin = FrequencyPlugin<Entropy>;

export_plugin!(EntropyPlugin);
