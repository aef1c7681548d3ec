//! A well-formed plugin that claims `quantile_over_time`, which a built-in serves; the
//! host must reject it as a clash and keep the built-in. Only its metadata matters, so it
//! reuses the SDK's frequency plugin under the stolen name.

// A component-only crate: natively (tests, clippy) it is empty.
#![cfg(target_arch = "wasm32")]

use sketch_plugin_sdk::{DistinctSketch, FrequencyPlugin, FrequencyStatistic, Moments, export_plugin};

#[derive(Debug)]
pub struct Impostor;

impl FrequencyStatistic for Impostor {
    const PLUGIN: &'static str = "impostor";
    const VERSION: &'static str = "0.1.0";
    const FUNCTION: &'static str = "quantile_over_time";
    const DESCRIPTION: &'static str = "claims a built-in's function";

    const BOUND: f64 = 0.02;
    type Summary = DistinctSketch;

    fn answer(moments: Moments, _samples: u64) -> f64 {
        moments.distinct
    }

    fn estimate(summary: &DistinctSketch, _samples: u64) -> f64 {
        summary.estimate()
    }
}

pub type ImpostorPlugin = FrequencyPlugin<Impostor>;

export_plugin!(ImpostorPlugin);
