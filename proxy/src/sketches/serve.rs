//! The sketch store as the engine's [`Sketches`]: a series' sketch answers a range
//! function when it covers every window the evaluation needs.

use std::sync::Arc;

use super::SketchStore;
use crate::plugin_host::{PluginSet, RangeRequest, Sketch};
use crate::prompb::Label;
use crate::promql::eval::value::Labels;
use crate::promql::eval::{Range, SketchValue, Sketches};

/// Windows may end this long after a sketch's newest sample and still be served:
/// remote write delivers in batches (every few seconds by default), so a sketch trails
/// its series by up to one batch, and a panel ending "now" would otherwise never be
/// served. The samples of that gap are the only ones an answer may miss.
pub const INGEST_LAG_MS: i64 = 30_000;

/// The store with the plugins that serve it.
#[derive(Debug, Clone)]
pub struct StoreSketches {
    /// The sketches.
    pub store: Arc<SketchStore>,
    /// The loaded plugins.
    pub plugins: Arc<PluginSet>,
}

impl Sketches for StoreSketches {
    fn serves(&self, function: &str) -> bool {
        self.plugins.for_function(function).is_some()
    }

    fn covers(&self, function: &str, labels: &Labels, ends: Range, window_ms: i64) -> bool {
        let key: Vec<Label> = labels.iter().cloned().collect();
        self.store
            .get(&key, function)
            .and_then(|sketch| sketch.serving(|s| covered(s, ends, window_ms)))
            .unwrap_or(false)
    }

    fn answer(
        &self,
        function: &str,
        labels: &Labels,
        args: &[f64],
        ends: Range,
        window_ms: i64,
    ) -> Option<Vec<Option<SketchValue>>> {
        let key: Vec<Label> = labels.iter().cloned().collect();
        let sketch = self.store.get(&key, function)?;
        sketch
            .serving(|s| {
                if !covered(s, ends, window_ms) {
                    return None;
                }
                let request = RangeRequest {
                    start_ms: ends.start_ms,
                    end_ms: ends.end_ms,
                    step_ms: ends.step_ms,
                    window_ms,
                };
                let answers = s.query_range(function, args, request).ok()?;
                Some(
                    answers
                        .into_iter()
                        .map(|a| {
                            a.map(|e| SketchValue {
                                value: e.value,
                                bound: e.bound,
                            })
                        })
                        .collect(),
                )
            })
            .flatten()
    }
}

/// Every window lies within what the sketch has seen.
fn covered(sketch: &Sketch, ends: Range, window_ms: i64) -> bool {
    match sketch.coverage() {
        Ok(Some((oldest, newest))) => {
            ends.start_ms - window_ms >= oldest && ends.end_ms <= newest + INGEST_LAG_MS
        }
        _ => false,
    }
}
