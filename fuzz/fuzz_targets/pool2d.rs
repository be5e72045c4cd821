//! Fuzz target `pool2d`: see `patchwise_fuzz_checks::pool2d` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::pool2d(data));
