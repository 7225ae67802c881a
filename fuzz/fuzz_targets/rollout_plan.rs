//! libFuzzer entry of `fuzz_targets::rollout_plan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::rollout_plan(data));
