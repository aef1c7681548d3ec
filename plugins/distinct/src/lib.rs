//! `distinct_over_time(v[w])`: number of distinct sample values in the window, over the frequencies of exact sample values (PromSketch's
//! definition). Always exact; see [`FrequencyPlugin`] for how it stays fast.

use sketch_plugin_sdk::{FrequencyPlugin, FrequencyStatistic, Moments, export_plugin};

/// The statistic.
#[derive(Debug)]
pub struct Distinct;

impl FrequencyStatistic for Distinct {
    const PLUGIN: &'static str = "distinct";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const FUNCTION: &'static str = "distinct_over_time";
    const DESCRIPTION: &'static str = "number of distinct sample values in the window (exact)";

    fn answer(moments: Moments, _samples: u64) -> f64 {
        moments.distinct
    }
}

/// The exported plugin.
pub type DistinctPlugin = FrequencyPlugin<Distinct>;

export_plugin!(DistinctPlugin);
