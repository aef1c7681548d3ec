//! `cargo fuzz run compact_answer`: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sketch_proxy::fuzzing::run("compact_answer", data));
