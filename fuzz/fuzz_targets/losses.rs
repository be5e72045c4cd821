//! Fuzz target `losses`: see `patchwise_fuzz_checks::losses` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::losses(data));
