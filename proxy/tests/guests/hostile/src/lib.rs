//! A plugin that misbehaves on purpose. Its sketch's `mode` option picks how `query`
//! and `query-range` fail: `spin` (never returns), `bomb` (allocates without end),
//! `panic`, `sleep` (waits an hour), `bad-bound` (claims a bound above the declared one), `short` (too few
//! range answers), `refuse` (a guest error), or `ok` (answers the sample count).

// A component-only crate: natively (tests, clippy) it is empty.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, reason = "generated component-model glue")]

use std::cell::Cell;

use sketch_plugin_sdk::bindings::exports::sketch_proxy::sketch::plugin as wit;

struct Hostile;

struct HostileSketch {
    mode: String,
    samples: Cell<u64>,
}

impl wit::Guest for Hostile {
    type Sketch = HostileSketch;

    fn info() -> wit::PluginInfo {
        wit::PluginInfo {
            name: "hostile".into(),
            version: "0.1.0".into(),
            functions: vec![wit::FunctionInfo {
                name: "hostile_over_time".into(),
                scalar_args: Vec::new(),
                bound: wit::ErrorBound {
                    relative: 0.01,
                    min_samples: 0,
                },
                description: "misbehaves on purpose".into(),
            }],
        }
    }
}

impl HostileSketch {
    fn misbehave(&self) -> Result<Option<wit::Estimate>, wit::Error> {
        let samples = self.samples.get().max(1);
        match self.mode.as_str() {
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile guest panics on purpose"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(None)
            }
            "bad-bound" => Ok(Some(wit::Estimate {
                value: 1.0,
                bound: 0.5,
                samples,
            })),
            "refuse" => Err(wit::Error::Other("refused on purpose".into())),
            _ => Ok(Some(wit::Estimate {
                value: samples as f64,
                bound: 0.0,
                samples,
            })),
        }
    }
}

impl wit::GuestSketch for HostileSketch {
    fn create(config: wit::SketchConfig) -> Result<wit::Sketch, wit::Error> {
        let mode = config
            .options
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok(wit::Sketch::new(HostileSketch {
            mode,
            samples: Cell::new(0),
        }))
    }

    fn restore(config: wit::SketchConfig, _snapshot: Vec<u8>) -> Result<wit::Sketch, wit::Error> {
        Self::create(config)
    }

    fn insert(&self, timestamps: Vec<i64>, _values: Vec<f64>) -> Result<(), wit::Error> {
        self.samples.set(self.samples.get() + timestamps.len() as u64);
        Ok(())
    }

    fn query(
        &self,
        _function: String,
        _args: Vec<f64>,
        _t0: i64,
        _t1: i64,
    ) -> Result<Option<wit::Estimate>, wit::Error> {
        self.misbehave()
    }

    fn query_range(
        &self,
        _function: String,
        _args: Vec<f64>,
        range: wit::RangeRequest,
    ) -> Result<Vec<Option<wit::Estimate>>, wit::Error> {
        let one = self.misbehave()?;
        let steps = ((range.end_ms - range.start_ms) / range.step_ms.max(1) + 1).max(0) as usize;
        let n = if self.mode == "short" {
            steps.saturating_sub(1)
        } else {
            steps
        };
        Ok(vec![one; n])
    }

    fn coverage(&self) -> Option<(i64, i64)> {
        None
    }

    fn memory_bytes(&self) -> u64 {
        0
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
}

sketch_plugin_sdk::bindings::export!(Hostile with_types_in sketch_plugin_sdk::bindings);
