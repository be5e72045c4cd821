//! Fuzz target `gemm`: see `patchwise_fuzz_checks::gemm` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| patchwise_fuzz_checks::gemm(data));
