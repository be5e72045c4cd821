//! The fuzz targets' checks on stable Rust: every checked-in corpus file
//! (`fuzz/corpus/<target>/`), and a few thousand deterministic pseudo-random
//! inputs per target.

use patchwise_fuzz_checks::TARGETS;
use std::path::Path;

#[test]
fn corpus_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|entry| entry.expect("readable entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus {} is empty", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
    }
}

#[test]
fn pseudo_random_inputs() {
    let cases: u64 = std::env::var("PATCHWISE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for (t, (name, check)) in TARGETS.iter().enumerate() {
        for case in 0..cases {
            let seed = (t as u64) << 32 | case;
            let len = (patchwise_reference::dropout_uniform(seed, 0) * 600.0) as u64;
            let data: Vec<u8> = (1..=len)
                .map(|i| (patchwise_reference::dropout_uniform(seed, i) * 256.0) as u8)
                .collect();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name}: case {case} fails: {data:?}");
        }
    }
}
