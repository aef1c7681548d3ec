//! `avg_over_time`, `sum_over_time`, `count_over_time`, `min_over_time`,
//! `max_over_time`, `stddev_over_time`, `stdvar_over_time` and `present_over_time` from
//! per-block statistics: count, minimum, maximum, a compensated sum, and the mean and
//! sum of squared deviations (merged by Chan's parallel form of Welford's update), with
//! NaN and infinities counted apart as Prometheus 2.42's arithmetic treats them.
//!
//! Bounds: `count`, `min`, `max` and `present` are exact at any size (bound 0). Windows
//! under 256 samples are answered with Prometheus 2.42's own sequential arithmetic (its
//! Kahan-compensated sums and running mean), bit for bit. Larger ones merge block
//! statistics, which sums in another order: `sum`, `avg`, `stddev` and `stdvar` then
//! differ from Prometheus' rounding by under 1e-12 relative on data whose sum does not
//! cancel (claimed as 1e-9); where values of opposite signs cancel to near zero, the
//! merged answer is the more accurate one and may differ from Prometheus' more.

mod exact;
mod stats;

use sketch_plugin_sdk::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, export_plugin};

pub use exact::OrderedWindow;
pub use stats::Stats;

/// The functions, in the order of [`PluginInfo::functions`].
pub const FUNCTIONS: [&str; 8] = [
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
];

/// Windows below this many samples are answered by Prometheus' sequential arithmetic.
pub const EXACT_BELOW: u64 = 256;

/// The relative bound claimed for the sums merged from blocks.
pub const SUM_BOUND: f64 = 1e-9;

/// The plugin; it has no options.
#[derive(Debug, Clone, Copy)]
pub struct StatsPlugin;

impl Plugin for StatsPlugin {
    type Summary = Stats;
    type Window = OrderedWindow;

    fn info() -> PluginInfo {
        let exact = Bound {
            relative: 0.0,
            min_samples: 0,
        };
        let summed = Bound {
            relative: SUM_BOUND,
            min_samples: EXACT_BELOW,
        };
        let function = |name: &str, bound: Bound, description: &str| FunctionInfo {
            name: name.into(),
            scalar_args: Vec::new(),
            bound,
            description: description.into(),
        };
        PluginInfo {
            name: "stats".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            functions: vec![
                function(
                    FUNCTIONS[0],
                    summed,
                    "mean of the values (merged block statistics)",
                ),
                function(FUNCTIONS[1], summed, "sum of the values (compensated block sums)"),
                function(FUNCTIONS[2], exact, "number of samples (exact)"),
                function(FUNCTIONS[3], exact, "smallest value, NaN only if all are (exact)"),
                function(FUNCTIONS[4], exact, "largest value, NaN only if all are (exact)"),
                function(
                    FUNCTIONS[5],
                    summed,
                    "population standard deviation (Chan's merge)",
                ),
                function(FUNCTIONS[6], summed, "population variance (Chan's merge)"),
                function(FUNCTIONS[7], exact, "1 for a window with samples (exact)"),
            ],
        }
    }

    fn configure(options: &[(String, String)]) -> Result<Self, Error> {
        match options.first() {
            None => Ok(Self),
            Some((key, _)) => Err(Error::InvalidConfig(format!(
                "unknown option {key:?}; stats takes none"
            ))),
        }
    }

    fn summary(&self) -> Stats {
        Stats::default()
    }

    fn window(&self) -> OrderedWindow {
        OrderedWindow::default()
    }

    fn exact(&self, call: Call<'_>, window: &OrderedWindow, _samples: u64) -> f64 {
        window.answer(call.function)
    }

    fn estimate(&self, call: Call<'_>, summary: &Stats, _samples: u64) -> Option<f64> {
        Some(summary.answer(call.function))
    }
}

export_plugin!(StatsPlugin);
