//! `avg_over_time`, `sum_over_time`, `count_over_time`, `min_over_time`,
//! `max_over_time`, `stddev_over_time`, `stdvar_over_time`, `present_over_time`,
//! `last_over_time`, `changes`, `resets`, `delta`, `increase` and `rate` from per-block
//! summaries of one sketch per series:
//! - statistics: count, minimum, maximum, a compensated sum, and the mean and sum of
//!   squared deviations (merged by Chan's parallel form of Welford's update), with NaN
//!   and infinities counted apart as Prometheus 2.42's arithmetic treats them;
//! - the run in time order: first and last value, changes and resets between
//!   neighbours, and the value before each reset (see `counter`).
//!
//! Bounds: `count`, `min`, `max`, `present`, `last`, `changes`, `resets` and `delta` are
//! exact at any size (bound 0), and `delta` is Prometheus' extrapolation to the bit.
//! `increase` and `rate` are too while their window holds at most
//! [`counter::LISTED_RESETS`] resets; past that the values before resets are summed
//! compensated instead of in Prometheus' order, and differ from Prometheus' rounding
//! by under 1e-12 relative (claimed as 1e-9).
//! Windows under 256 samples are answered with Prometheus 2.42's own sequential
//! arithmetic (its Kahan-compensated sums and running mean), bit for bit. Larger ones
//! merge block statistics, which sums in another order: `sum`, `avg`, `stddev` and
//! `stdvar` then differ from Prometheus' rounding by under 1e-12 relative on data whose
//! sum does not cancel (claimed as 1e-9); where values of opposite signs cancel to near
//! zero, the merged answer is the more accurate one and may differ from Prometheus' more.

pub mod counter;
mod exact;
mod stats;

use sketch_plugin_sdk::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, Summary, export_plugin};

pub use counter::Counter;
pub use exact::OrderedWindow;
pub use stats::Stats;

/// The functions, in the order of [`PluginInfo::functions`].
pub const FUNCTIONS: [&str; 14] = [
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "last_over_time",
    "changes",
    "resets",
    "delta",
    "increase",
    "rate",
];

/// Where the functions over a run in time order start in [`FUNCTIONS`].
const FIRST_ORDERED: usize = 8;

/// Windows below this many samples are answered by Prometheus' sequential arithmetic.
pub const EXACT_BELOW: u64 = 256;

/// Windows of the functions over the run (`last_over_time` to `rate`) below this many
/// samples are answered from the exact sliding window; larger ones from summaries.
pub const SLIDE_BELOW: u64 = 4096;

/// The relative bound claimed for the sums merged from blocks.
pub const SUM_BOUND: f64 = 1e-9;

/// The plugin; it has no options.
#[derive(Debug, Clone, Copy)]
pub struct StatsPlugin;

/// The summary of a block or tree node: its statistics and its run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockSummary {
    pub stats: Stats,
    pub counter: Counter,
}

impl Summary for BlockSummary {
    fn add(&mut self, value: f64) {
        self.stats.add(value);
        self.counter.add(value);
    }

    fn merge(&mut self, other: &Self) {
        self.stats.merge(&other.stats);
        self.counter.merge(&other.counter);
    }

    fn memory_bytes(&self) -> usize {
        self.stats.memory_bytes() + self.counter.memory_bytes()
    }

    fn shrink(&mut self) {
        self.counter.shrink();
    }
}

impl BlockSummary {
    /// Function `function` (an index of [`FUNCTIONS`]) over `call`'s span.
    pub fn answer(&self, call: Call<'_>) -> Option<f64> {
        let counter = &self.counter;
        Some(match call.function {
            f if f < FIRST_ORDERED => self.stats.answer(f),
            8 => counter.last(),
            9 => counter.changes() as f64,
            10 => counter.resets() as f64,
            f => return counter.extrapolated(call.span, f != 11, f == 13),
        })
    }
}

impl Plugin for StatsPlugin {
    type Summary = BlockSummary;
    type Window = OrderedWindow;
    const SAMPLE_TIMES: bool = true;

    fn info() -> PluginInfo {
        let exact = Bound {
            relative: 0.0,
            min_samples: 0,
        };
        let summed = Bound {
            relative: SUM_BOUND,
            min_samples: EXACT_BELOW,
        };
        // Windows of the functions over the run slide exactly, a panel's step costing
        // the samples it moves by; summaries answer the larger ones, exactly but for
        // the sum of the values before resets past LISTED_RESETS of them.
        let ordered = Bound {
            relative: 0.0,
            min_samples: SLIDE_BELOW,
        };
        let counted = Bound {
            relative: SUM_BOUND,
            min_samples: SLIDE_BELOW,
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
                function(FUNCTIONS[8], ordered, "value of the newest sample (exact)"),
                function(FUNCTIONS[9], ordered, "times the value changed (exact)"),
                function(FUNCTIONS[10], ordered, "times the value dropped (exact)"),
                function(
                    FUNCTIONS[11],
                    ordered,
                    "last less first, extrapolated as Prometheus (exact)",
                ),
                function(
                    FUNCTIONS[12],
                    counted,
                    "counter increase, extrapolated as Prometheus",
                ),
                function(
                    FUNCTIONS[13],
                    counted,
                    "per-second counter increase, extrapolated as Prometheus",
                ),
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

    fn summary(&self) -> BlockSummary {
        BlockSummary::default()
    }

    fn window(&self) -> OrderedWindow {
        OrderedWindow::default()
    }

    fn exact(&self, call: Call<'_>, window: &OrderedWindow, _samples: u64) -> Option<f64> {
        window.answer(call.function, call.span)
    }

    fn estimate(&self, call: Call<'_>, summary: &BlockSummary, _samples: u64) -> Option<f64> {
        // Every function is defined over the summarized samples but the extrapolated
        // ones over a single sample, which the exact path then reports as no value.
        summary.answer(call)
    }
}

export_plugin!(StatsPlugin);
