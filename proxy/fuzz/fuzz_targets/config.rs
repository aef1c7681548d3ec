//! `cargo fuzz run config`: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sketch_proxy::fuzzing::run("config", data));
