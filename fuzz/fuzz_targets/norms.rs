//! Fuzz target `norms`: see `patchwise_fuzz_checks::norms` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::norms(data));
