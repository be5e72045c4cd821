//! Fuzz target `im2col_col2im`: see `patchwise_fuzz_checks::im2col_col2im` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::im2col_col2im(data));
