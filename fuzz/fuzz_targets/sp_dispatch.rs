//! libFuzzer entry of `fuzz_targets::sp_dispatch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::sp_dispatch(data));
