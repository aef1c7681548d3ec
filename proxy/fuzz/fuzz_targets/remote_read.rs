//! `cargo fuzz run remote_read`: see docs/fuzzing.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sketch_proxy::fuzzing::run("remote_read", data));
