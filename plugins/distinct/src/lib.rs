//! `distinct_over_time(v[w])`: number of distinct sample values in the window, over the frequencies of exact sample values (PromSketch's
//! definition). Exact below 1,000 samples, within 2% above.

use sketch_plugin_sdk::{DistinctSketch, FrequencyPlugin, FrequencyStatistic, Moments, export_plugin};

/// The statistic.
#[derive(Debug)]
pub struct Distinct;

impl FrequencyStatistic for Distinct {
    const PLUGIN: &'static str = "distinct";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const FUNCTION: &'static str = "distinct_over_time";
    const DESCRIPTION: &'static str = "number of distinct sample values in the window";

    const BOUND: f64 = 0.02;
    type Summary = DistinctSketch;

    fn answer(moments: Moments, _samples: u64) -> f64 {
        moments.distinct
    }

    fn estimate(summary: &DistinctSketch, _samples: u64) -> f64 {
        summary.estimate()
    }
}

/// The exported plugin.
pub type DistinctPlugin = FrequencyPlugin<Distinct>;

export_plugin!(DistinctPlugin);
