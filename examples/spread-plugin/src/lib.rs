//! `spread_over_time(v[w])`: the largest minus the smallest value in the window, a
//! function Prometheus does not have. NaN values are ignored; a window of only NaNs
//! answers NaN.
//!
//! Min and max merge exactly, so the summary is two numbers per tree node and every
//! answer is exact (bound 0) while a query still touches only `O(log n)` nodes.

use sketch_plugin_sdk::{
    Bound, Call, Error, FunctionInfo, Plugin, PluginInfo, SortedWindow, Summary, export_plugin,
};

/// The plugin; it has no options.
#[derive(Debug, Clone, Copy)]
pub struct Spread;

/// Smallest and largest non-NaN value seen.
#[derive(Debug, Clone, Copy)]
pub struct MinMax {
    min: f64,
    max: f64,
}

impl Default for MinMax {
    fn default() -> Self {
        Self {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl MinMax {
    fn spread(&self) -> f64 {
        if self.min > self.max {
            f64::NAN
        } else {
            self.max - self.min
        }
    }
}

impl Summary for MinMax {
    fn add(&mut self, value: f64) {
        if !value.is_nan() {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
    }

    fn merge(&mut self, other: &Self) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Self>()
    }
}

impl Plugin for Spread {
    type Summary = MinMax;
    type Window = SortedWindow;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "spread".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            functions: vec![FunctionInfo {
                name: "spread_over_time".into(),
                scalar_args: Vec::new(),
                bound: Bound {
                    relative: 0.0,
                    min_samples: 64,
                },
                description: "max - min of the values in the window (exact)".into(),
            }],
        }
    }

    fn configure(options: &[(String, String)]) -> Result<Self, Error> {
        match options.first() {
            None => Ok(Self),
            Some((key, _)) => Err(Error::InvalidConfig(format!(
                "unknown option {key:?}; spread takes none"
            ))),
        }
    }

    fn summary(&self) -> MinMax {
        MinMax::default()
    }

    fn window(&self) -> SortedWindow {
        SortedWindow::default()
    }

    fn exact(&self, _call: Call<'_>, window: &SortedWindow, samples: u64) -> Option<f64> {
        // NaNs sort first; the smallest number follows them.
        let first = (0..samples).find(|&i| !window.nth(i).is_nan());
        Some(first.map_or(f64::NAN, |i| window.nth(samples - 1) - window.nth(i)))
    }

    fn estimate(&self, _call: Call<'_>, summary: &MinMax, _samples: u64) -> Option<f64> {
        Some(summary.spread())
    }
}

export_plugin!(Spread);
