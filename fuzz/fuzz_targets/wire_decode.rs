//! libFuzzer entry of `fuzz_targets::wire_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::wire_decode(data));
