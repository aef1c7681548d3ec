//! `entropy_over_time(v[w])`: Shannon entropy in bits of the sample values in the window, over the frequencies of exact sample values (PromSketch's
//! definition). Always exact; see [`FrequencyPlugin`] for how it stays fast.

use sketch_plugin_sdk::{FrequencyPlugin, FrequencyStatistic, Moments, export_plugin};

/// The statistic.
#[derive(Debug)]
pub struct Entropy;

impl FrequencyStatistic for Entropy {
    const PLUGIN: &'static str = "entropy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const FUNCTION: &'static str = "entropy_over_time";
    const DESCRIPTION: &'static str = "Shannon entropy in bits of the sample values in the window (exact)";

    fn answer(moments: Moments, samples: u64) -> f64 {
        moments.entropy(samples)
    }
}

/// The exported plugin.
pub type EntropyPlugin = FrequencyPlugin<Entropy>;

export_plugin!(EntropyPlugin);
