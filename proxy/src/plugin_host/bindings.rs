//! The only `bindgen!` site: host-side types generated from `wit/sketch.wit`.

#![allow(missing_docs, missing_debug_implementations, reason = "generated code")]

wasmtime::component::bindgen!({
    world: "sketch-plugin",
    path: "../wit",
});

pub use exports::sketch_proxy::sketch::plugin::{
    Error as WitError, ErrorBound, Estimate, FunctionInfo, PluginInfo, RangeRequest, SketchConfig,
};
