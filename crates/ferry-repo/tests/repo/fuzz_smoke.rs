//! The fuzz targets' checks (`ferry_repo::fuzzing`, `ferry_config::fuzzing`) on the seeds in
//! `fuzz/seeds` and seeded mutations of them, so every test run exercises them without
//! nightly or libFuzzer; `fuzz/run` fuzzes the same entry points for real. An input a fuzzer
//! finds crashing goes into `fuzz/seeds/<target>/`, so this test keeps it fixed.

use std::path::Path;

use ferry_repo::fuzzing::{self, Mutator};

/// Mutations per seed file.
const ROUNDS: usize = 1500;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn run(target: &str, check: fn(&[u8])) {
    let seeds = seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        check(seed);
        let mut m = Mutator::new(i as u64 + 1);
        let mut input = seed.clone();
        for round in 0..ROUNDS {
            // Mostly fresh mutations of the seed, sometimes stacked on the last one.
            input = if round % 4 == 0 {
                m.mutate(&input)
            } else {
                m.mutate(seed)
            };
            check(&input);
        }
    }
}

#[test]
fn tree_parser() {
    run("tree", fuzzing::tree);
}

#[test]
fn index_parser() {
    run("index", fuzzing::index);
}

#[test]
fn snapshot_parser() {
    run("snapshot", fuzzing::snapshot);
}

#[test]
fn key_parser() {
    run("key", fuzzing::key);
}

#[test]
fn pack_header_parser() {
    run("pack_header", fuzzing::pack_header);
}

#[test]
fn poly1305_mac() {
    run("poly1305", fuzzing::poly1305);
}

#[test]
fn aes_ctr_keystream() {
    run("aes_ctr", fuzzing::aes_ctr);
}

#[test]
fn sha256_lanes() {
    run("sha256_lanes", fuzzing::sha256_lanes);
}

#[test]
fn configmap_loader() {
    run("configmap", ferry_config::fuzzing::load);
}
