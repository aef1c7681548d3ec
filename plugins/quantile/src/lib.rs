//! `quantile_over_time(φ, v[w])` from a relative-error log histogram.
//!
//! Windows under 1,000 samples are answered exactly with Prometheus' interpolation. Larger
//! ones read both order statistics around rank `φ·(n-1)` from merged histograms whose
//! buckets are 0.8% wide (relative), and interpolate between them: when both neighbours
//! have the same sign the result is within 0.8% of Prometheus' answer, claimed as 1%.

use sketch_plugin_sdk::{
    Bound, Call, Error, FunctionInfo, LogHistogram, Plugin, PluginInfo, SortedWindow, export_plugin,
};

/// Relative accuracy of the buckets; kept below the claimed 1% to absorb rounding.
const ALPHA: f64 = 0.008;

/// The plugin; it has no options.
#[derive(Debug, Clone, Copy)]
pub struct Quantile;

impl Plugin for Quantile {
    type Summary = LogHistogram;
    type Window = SortedWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "quantile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            functions: vec![FunctionInfo {
                name: "quantile_over_time".into(),
                scalar_args: vec!["phi".into()],
                bound: Bound {
                    relative: 0.01,
                    min_samples: 1000,
                },
                description:
                    "φ-quantile of the values in the window (log histogram, 1% relative value error)".into(),
            }],
        }
    }

    fn configure(options: &[(String, String)]) -> Result<Self, Error> {
        match options.first() {
            None => Ok(Self),
            Some((key, _)) => Err(Error::InvalidConfig(format!(
                "unknown option {key:?}; quantile takes none"
            ))),
        }
    }

    fn summary(&self) -> LogHistogram {
        LogHistogram::new(ALPHA)
    }

    fn window(&self) -> SortedWindow {
        SortedWindow::default()
    }

    fn exact(&self, call: Call<'_>, window: &SortedWindow, _samples: u64) -> Option<f64> {
        Some(window.quantile(call.args[0]))
    }

    fn estimate(&self, call: Call<'_>, summary: &LogHistogram, _samples: u64) -> Option<f64> {
        Some(summary.quantile(call.args[0]))
    }
}

export_plugin!(Quantile);
