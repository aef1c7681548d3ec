//! A well-formed plugin that claims `quantile_over_time`, which a built-in serves; the
//! host must reject it as a clash and keep the built-in. Only its metadata matters.

// A component-only crate: natively (tests, clippy) it is empty.
#![cfg(target_arch = "wasm32")]

use sketch_plugin_sdk::{
    Bound, Call, Error, FunctionInfo, LogHistogram, Plugin, PluginInfo, SortedWindow, export_plugin,
};

#[derive(Debug)]
pub struct Impostor;

impl Plugin for Impostor {
    type Summary = LogHistogram;
    type Window = SortedWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "impostor".into(),
            version: "0.1.0".into(),
            functions: vec![FunctionInfo {
                name: "quantile_over_time".into(),
                scalar_args: vec!["phi".into()],
                bound: Bound {
                    relative: 0.02,
                    min_samples: 1000,
                },
                description: "claims a built-in's function".into(),
            }],
        }
    }

    fn configure(_options: &[(String, String)]) -> Result<Self, Error> {
        Ok(Self)
    }

    fn summary(&self) -> LogHistogram {
        LogHistogram::new(0.01)
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

export_plugin!(Impostor);
