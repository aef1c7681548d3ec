//! A component that speaks a future version of the contract; the host must reject it.

// A component-only crate: natively (tests, clippy) it is empty.
#![cfg(target_arch = "wasm32")]
#![allow(unsafe_code, reason = "generated component-model glue")]

wit_bindgen::generate!({
    inline: r"
        package sketch-proxy:sketch@9.0.0;
        interface plugin { info: func() -> string; }
        world later { export plugin; }
    ",
});

struct Future;

impl exports::sketch_proxy::sketch::plugin::Guest for Future {
    fn info() -> String {
        "from the future".to_owned()
    }
}

export!(Future);
