//! Guest SDK for sketch-proxy plugins.
//!
//! A plugin is a WebAssembly component (target `wasm32-wasip2`) that exports the
//! `sketch-proxy:sketch/plugin@0.1.0` interface of `wit/sketch.wit`. This crate hides the
//! generated bindings and gives plugin authors three things:
//!
//! - [`Plugin`]: the one trait to implement — metadata, an exact answer over a small
//!   window ([`Window`]) and an estimate from a mergeable [`Summary`];
//! - the time windowing: [`Series`] keeps the raw samples of the retained span in blocks
//!   and a tree of block summaries, so any `[t0, t1]` is answered from `O(log n)` merged
//!   summaries plus at most two partial blocks of raw samples, and windows with fewer
//!   samples than the function's `min-samples` are answered exactly;
//! - ready-made summaries: [`LogHistogram`] (relative-error quantiles),
//!   [`FrequencySummary`] (value frequencies: exact up to a capacity, then heavy values
//!   plus a coordinated sample and HyperLogLog registers), with the matching
//!   exact windows [`SortedWindow`] and [`FrequencyWindow`].
//!
//! ```text
//! struct Spread;
//! impl sketch_plugin_sdk::Plugin for Spread { /* ... */ }
//! sketch_plugin_sdk::export_plugin!(Spread);
//! ```
//!
//! Plugins run without a clock, files, network or environment, and every trap (panic,
//! deadline, memory cap) gets the whole plugin quarantined by the host, so report bad
//! input as an [`Error`] instead of panicking.

mod adapter;
mod frequency;
mod histogram;
mod plugin;
mod samples;
mod series;

#[doc(hidden)]
pub mod bindings {
    #![allow(
        unsafe_code,
        reason = "the generated component-model glue is unsafe by nature"
    )]
    #![allow(missing_docs, reason = "generated code")]
    wit_bindgen::generate!({
        world: "sketch-plugin",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "sketch_plugin_sdk::bindings",
    });
}

#[doc(hidden)]
pub use adapter::Adapter;
pub use frequency::{
    FREQUENCY_BOUND, FrequencyPlugin, FrequencySample, FrequencySummary, FrequencyWindow, HEAVY_VALUES,
    LG_REGISTERS, Moments, SAMPLE_SIZE,
};
pub use histogram::{LogHistogram, SortedWindow, prometheus_quantile};
pub use plugin::{Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, Span, Summary, Window};
pub use series::{BLOCK_SAMPLES, NODE_BYTES_PER_SAMPLE, Series};

/// Exports `$plugin` (a type implementing [`Plugin`]) as the component's
/// `sketch-proxy:sketch/plugin` interface. Use it once, at the crate root of a `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        // Only components carry the exports; native builds (tests, clippy) cannot link
        // symbol names like `sketch-proxy:sketch/plugin@0.1.0#info`.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code, reason = "the component-model export glue is generated unsafe code")]
        mod __sketch_plugin_export {
            type PluginExport = $crate::Adapter<super::$plugin>;
            ::sketch_plugin_sdk::bindings::export!(PluginExport with_types_in ::sketch_plugin_sdk::bindings);
        }
    };
}
