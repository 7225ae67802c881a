//! libFuzzer entry of `fuzz_targets::control_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::control_request(data));
