//! Fuzz target `conv2d`: see `patchwise_fuzz_checks::conv2d` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::conv2d(data));
