//! libFuzzer entry of `fuzz_targets::control_framing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::control_framing(data));
