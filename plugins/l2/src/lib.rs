//! `l2_over_time(v[w])`: square root of the sum of squared value frequencies in the window, over the frequencies of exact sample values (PromSketch's
//! definition). Exact below 1,000 samples, within 2% above.

use sketch_plugin_sdk::{FrequencyPlugin, FrequencySample, FrequencyStatistic, Moments, export_plugin};

/// The statistic.
#[derive(Debug)]
pub struct L2;

impl FrequencyStatistic for L2 {
    const PLUGIN: &'static str = "l2";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const FUNCTION: &'static str = "l2_over_time";
    const DESCRIPTION: &'static str = "square root of the sum of squared value frequencies in the window";

    const BOUND: f64 = 0.02;
    type Summary = FrequencySample;

    fn answer(moments: Moments, _samples: u64) -> f64 {
        moments.l2()
    }

    fn estimate(summary: &FrequencySample, samples: u64) -> f64 {
        summary.moments(samples).l2()
    }
}

/// The exported plugin.
pub type L2Plugin = FrequencyPlugin<L2>;

export_plugin!(L2Plugin);
