//! `cargo fuzz run remote_write`: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sketch_proxy::fuzzing::run("remote_write", data));
