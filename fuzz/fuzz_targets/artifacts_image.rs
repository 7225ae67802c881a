//! libFuzzer entry of `fuzz_targets::artifacts_image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::artifacts_image(data));
