//! A plugin that writes to stderr in `info` (and is otherwise valid) and writes to
//! stderr, then panics, in `create`: every Rust panic message goes to stderr, and the
//! host's synchronous WASI shims must not take the proxy down with it.

// A component-only crate: natively (tests, clippy) it is empty.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, reason = "generated component-model glue")]
#![allow(clippy::print_stderr, reason = "writing to stderr is what this guest is for")]

use sketch_plugin_sdk::bindings::exports::sketch_proxy::sketch::plugin as wit;

struct Noisy;

struct NoisySketch;

impl wit::Guest for Noisy {
    type Sketch = NoisySketch;

    fn info() -> wit::PluginInfo {
        for line in 0..5 {
            eprintln!("noisy guest: info line {line}");
        }
        wit::PluginInfo {
            name: "noisy".into(),
            version: "0.1.0".into(),
            functions: vec![wit::FunctionInfo {
                name: "noisy_over_time".into(),
                scalar_args: Vec::new(),
                bound: wit::ErrorBound {
                    relative: 0.0,
                    min_samples: 0,
                },
                description: "writes to stderr, then panics in create".into(),
            }],
        }
    }
}

impl wit::GuestSketch for NoisySketch {
    fn create(_config: wit::SketchConfig) -> Result<wit::Sketch, wit::Error> {
        eprintln!("noisy guest: about to panic in create");
        panic!("noisy guest panics in create on purpose");
    }

    fn restore(config: wit::SketchConfig, _snapshot: Vec<u8>) -> Result<wit::Sketch, wit::Error> {
        Self::create(config)
    }

    fn insert(&self, _timestamps: Vec<i64>, _values: Vec<f64>) -> Result<(), wit::Error> {
        Ok(())
    }

    fn query(
        &self,
        _function: String,
        _args: Vec<f64>,
        _t0: i64,
        _t1: i64,
    ) -> Result<Option<wit::Estimate>, wit::Error> {
        Ok(None)
    }

    fn query_range(
        &self,
        _function: String,
        _args: Vec<f64>,
        _range: wit::RangeRequest,
    ) -> Result<Vec<Option<wit::Estimate>>, wit::Error> {
        Ok(Vec::new())
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

sketch_plugin_sdk::bindings::export!(Noisy with_types_in sketch_plugin_sdk::bindings);
