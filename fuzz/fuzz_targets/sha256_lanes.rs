#![no_main]
//! Fuzzes ferry_repo::fuzzing::sha256_lanes (see that function for what it asserts).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_repo::fuzzing::sha256_lanes(data));
